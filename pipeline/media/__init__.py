"""Reading a media file: its containers and tracks (`reader`: probe and decode with PyAV),
which audio track is transcribed (`tracks`), and the decoded audio put on the clock a player
shows (`timeline`)."""
