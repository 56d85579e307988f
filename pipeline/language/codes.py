"""Language codes: Whisper's languages and every way files, containers and media servers name them.

Subtitle names use ISO 639-1 (`movie.de.srt`); Matroska and MP4 tags use ISO 639-2, in its
bibliographic (`ger`) or terminology (`deu`) form; people and Bazarr write English names
("German", "Castilian"). All of them normalise to Whisper's own code, and anything else (`und`,
`mul`, a typo) to `unknown`, so the set of language labels on metrics stays bounded.
"""

from __future__ import annotations

UNKNOWN = "unknown"

# Whisper's code -> (ISO 639-2 codes, bibliographic first; Whisper's English name). Whisper's
# names are what its tokenizer and Bazarr's /detect-language answer use ("haitian creole",
# "myanmar"); the order is Whisper's. 99 languages, and Cantonese (`yue`) since large-v3.
_TABLE: dict[str, tuple[str, str]] = {
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
    "uz": ("uzb", "uzbek"), "fo": ("fao", "faroese"), "ht": ("hat", "haitian creole"),
    "ps": ("pus", "pashto"), "tk": ("tuk", "turkmen"), "nn": ("nno", "nynorsk"),
    "mt": ("mlt", "maltese"), "sa": ("san", "sanskrit"), "lb": ("ltz", "luxembourgish"),
    "my": ("bur mya", "myanmar"), "bo": ("tib bod", "tibetan"), "tl": ("tgl fil", "tagalog"),
    "mg": ("mlg", "malagasy"), "as": ("asm", "assamese"), "tt": ("tat", "tatar"),
    "haw": ("haw", "hawaiian"), "ln": ("lin", "lingala"), "ha": ("hau", "hausa"),
    "ba": ("bak", "bashkir"), "jw": ("jav", "javanese"), "su": ("sun", "sundanese"),
    "yue": ("yue", "cantonese"),
}

# Other names and codes in use: Whisper's own aliases (its TO_LANGUAGE_CODE), 639-1 codes that
# differ from Whisper's (`jv`, retired `iw`/`in`/`ji`, Bokmål `nb`), 639-3 macrolanguage members
# and a few native names media servers write.
_ALIASES: dict[str, str] = {
    "burmese": "my", "valencian": "ca", "flemish": "nl", "haitian": "ht",
    "letzeburgesch": "lb", "pushto": "ps", "panjabi": "pa", "moldavian": "ro",
    "moldovan": "ro", "sinhalese": "si", "castilian": "es", "mandarin": "zh",
    "farsi": "fa", "filipino": "tl", "norwegian bokmal": "no", "norwegian bokmål": "no",
    "norwegian nynorsk": "nn", "bokmal": "no", "bokmål": "no",
    "jv": "jw", "iw": "he", "in": "id", "ji": "yi", "nb": "no", "mo": "ro",
    "cmn": "zh", "zsm": "ms", "pes": "fa", "arb": "ar", "ekk": "et", "lvs": "lv",
    "deutsch": "de", "français": "fr", "francais": "fr", "español": "es", "espanol": "es",
    "italiano": "it", "nederlands": "nl", "português": "pt", "portugues": "pt",
    "русский": "ru", "日本語": "ja", "中文": "zh", "한국어": "ko",
}

# ISO 639-2 codes that name no language: undetermined, multiple, no linguistic content,
# uncoded, and the local-use range qaa..qtz (checked by pattern below).
_NO_LANGUAGE = {"und", "mul", "zxx", "mis", "", UNKNOWN, "none", "n/a", "unknown language"}

_LOOKUP: dict[str, str] = {}
for _code, (_three, _name) in _TABLE.items():
    _LOOKUP[_code] = _code
    _LOOKUP[_name] = _code
    for _other in _three.split():
        _LOOKUP[_other] = _code
_LOOKUP.update(_ALIASES)

WHISPER_CODES: tuple[str, ...] = tuple(_TABLE)
WHISPER_NAMES: dict[str, str] = {code: name for code, (_, name) in _TABLE.items()}
# Every value a `language` label can take: Whisper's codes and `unknown`, nothing else.
LANGUAGE_LABELS: frozenset[str] = frozenset(WHISPER_CODES) | {UNKNOWN}


def _clean(code: str) -> str:
    """Lower case, and no region or script: `en-US`, `pt_BR`, `zh-Hans` -> `en`, `pt`, `zh`."""
    code = " ".join(code.strip().lower().split())
    if code in _LOOKUP:
        return code
    for separator in "-_":
        head = code.split(separator, 1)[0]
        if head != code and head in _LOOKUP:
            return head
    return code


def to_iso639_1(code: str | None) -> str | None:
    """Whisper's code (ISO 639-1 where one exists) for a tag, code or name; None when the value
    names no language Whisper knows (`und`, `mul`, empty, unheard of)."""
    if code is None:
        return None
    code = _clean(code)
    if code in _NO_LANGUAGE or (len(code) == 3 and "qaa" <= code <= "qtz"):
        return None
    found = _LOOKUP.get(code)
    return None if found == UNKNOWN else found


def language_label(code: str | None) -> str:
    """The bounded label for a language: Whisper's code, or `unknown`."""
    return to_iso639_1(code) or UNKNOWN


def whisper_name(code: str | None) -> str:
    """Whisper's English name for a language ("german"), or `unknown`."""
    found = to_iso639_1(code)
    return WHISPER_NAMES[found] if found else UNKNOWN


def codes_for(language: str) -> set[str]:
    """Every lower-case code or name a file or stream may use for this language."""
    found = to_iso639_1(language)
    if found is None:
        return {language.lower()}
    return {found, *(alias for alias, code in _LOOKUP.items() if code == found)}
