"""ISO 639 codes of Whisper's languages: subtitle names use 639-1 (`en`), media servers and
containers also use 639-2 (`eng`, `ger`/`deu`) and English names — all count as "the same language"."""

from __future__ import annotations

# 639-1: (639-2 codes, English name)
_TABLE = {
    "en": ("eng", "english"), "zh": ("chi zho", "chinese"), "de": ("ger deu", "german"),
    "es": ("spa", "spanish"), "ru": ("rus", "russian"), "ko": ("kor", "korean"),
    "fr": ("fre fra", "french"), "ja": ("jpn", "japanese"), "pt": ("por", "portuguese"),
    "tr": ("tur", "turkish"), "pl": ("pol", "polish"), "ca": ("cat", "catalan"),
    "nl": ("dut nld", "dutch"), "ar": ("ara", "arabic"), "sv": ("swe", "swedish"),
    "it": ("ita", "italian"), "id": ("ind", "indonesian"), "hi": ("hin", "hindi"),
    "fi": ("fin", "finnish"), "vi": ("vie", "vietnamese"), "he": ("heb", "hebrew"),
    "uk": ("ukr", "ukrainian"), "el": ("gre ell", "greek"), "ms": ("may msa", "malay"),
    "cs": ("cze ces", "czech"), "ro": ("rum ron", "romanian"), "da": ("dan", "danish"),
    "hu": ("hun", "hungarian"), "ta": ("tam", "tamil"), "no": ("nor nob", "norwegian"),
    "th": ("tha", "thai"), "ur": ("urd", "urdu"), "hr": ("hrv", "croatian"),
    "bg": ("bul", "bulgarian"), "lt": ("lit", "lithuanian"), "la": ("lat", "latin"),
    "mi": ("mao mri", "maori"), "ml": ("mal", "malayalam"), "cy": ("wel cym", "welsh"),
    "sk": ("slo slk", "slovak"), "te": ("tel", "telugu"), "fa": ("per fas", "persian"),
    "lv": ("lav", "latvian"), "bn": ("ben", "bengali"), "sr": ("srp", "serbian"),
    "az": ("aze", "azerbaijani"), "sl": ("slv", "slovenian"), "kn": ("kan", "kannada"),
    "et": ("est", "estonian"), "mk": ("mac mkd", "macedonian"), "br": ("bre", "breton"),
    "eu": ("baq eus", "basque"), "is": ("ice isl", "icelandic"), "hy": ("arm hye", "armenian"),
    "ne": ("nep", "nepali"), "mn": ("mon", "mongolian"), "bs": ("bos", "bosnian"),
    "kk": ("kaz", "kazakh"), "sq": ("alb sqi", "albanian"), "sw": ("swa", "swahili"),
    "gl": ("glg", "galician"), "mr": ("mar", "marathi"), "pa": ("pan", "punjabi"),
    "si": ("sin", "sinhala"), "km": ("khm", "khmer"), "sn": ("sna", "shona"),
    "yo": ("yor", "yoruba"), "so": ("som", "somali"), "af": ("afr", "afrikaans"),
    "oc": ("oci", "occitan"), "ka": ("geo kat", "georgian"), "be": ("bel", "belarusian"),
    "tg": ("tgk", "tajik"), "sd": ("snd", "sindhi"), "gu": ("guj", "gujarati"),
    "am": ("amh", "amharic"), "yi": ("yid", "yiddish"), "lo": ("lao", "lao"),
    "uz": ("uzb", "uzbek"), "fo": ("fao", "faroese"), "ht": ("hat", "haitian"),
    "ps": ("pus", "pashto"), "tk": ("tuk", "turkmen"), "nn": ("nno", "nynorsk"),
    "mt": ("mlt", "maltese"), "sa": ("san", "sanskrit"), "lb": ("ltz", "luxembourgish"),
    "my": ("bur mya", "burmese"), "bo": ("tib bod", "tibetan"), "tl": ("tgl fil", "tagalog"),
    "mg": ("mlg", "malagasy"), "as": ("asm", "assamese"), "tt": ("tat", "tatar"),
    "haw": ("haw", "hawaiian"), "ln": ("lin", "lingala"), "ha": ("hau", "hausa"),
    "ba": ("bak", "bashkir"), "jw": ("jav", "javanese"), "su": ("sun", "sundanese"),
    "yue": ("yue", "cantonese"),
}


def codes_for(language: str) -> set[str]:
    """Every lower-case code or name a file or stream may use for this ISO 639-1 language."""
    language = language.lower()
    if language not in _TABLE:
        return {language}
    three, name = _TABLE[language]
    return {language, *three.split(), name}


def to_iso639_1(code: str | None) -> str | None:
    """Normalise a container's language tag (`eng`, `en`, `English`) to ISO 639-1, or None."""
    if not code:
        return None
    code = code.strip().lower()
    for one, (three, name) in _TABLE.items():
        if code == one or code in three.split() or code == name:
            return one
    return None
