"""The languages Whisper knows, for a manifest's `voice_language`: checked without importing transformers.

Copied from transformers' `models/whisper/tokenization_whisper.py` (LANGUAGES, TO_LANGUAGE_CODE); a test keeps
them equal, so a transformers upgrade that adds one shows up.
"""

WHISPER_LANGUAGES = frozenset({
    'af', 'am', 'ar', 'as', 'az', 'ba', 'be', 'bg', 'bn', 'bo', 'br', 'bs', 'ca', 'cs', 'cy', 'da', 'de', 'el',
    'en', 'es', 'et', 'eu', 'fa', 'fi', 'fo', 'fr', 'gl', 'gu', 'ha', 'haw', 'he', 'hi', 'hr', 'ht', 'hu', 'hy',
    'id', 'is', 'it', 'ja', 'jw', 'ka', 'kk', 'km', 'kn', 'ko', 'la', 'lb', 'ln', 'lo', 'lt', 'lv', 'mg', 'mi',
    'mk', 'ml', 'mn', 'mr', 'ms', 'mt', 'my', 'ne', 'nl', 'nn', 'no', 'oc', 'pa', 'pl', 'ps', 'pt', 'ro', 'ru',
    'sa', 'sd', 'si', 'sk', 'sl', 'sn', 'so', 'sq', 'sr', 'su', 'sv', 'sw', 'ta', 'te', 'tg', 'th', 'tk', 'tl',
    'tr', 'tt', 'uk', 'ur', 'uz', 'vi', 'yi', 'yo', 'yue', 'zh',
})
WHISPER_LANGUAGE_NAMES = frozenset({
    'afrikaans', 'albanian', 'amharic', 'arabic', 'armenian', 'assamese', 'azerbaijani', 'bashkir', 'basque',
    'belarusian', 'bengali', 'bosnian', 'breton', 'bulgarian', 'burmese', 'cantonese', 'castilian', 'catalan',
    'chinese', 'croatian', 'czech', 'danish', 'dutch', 'english', 'estonian', 'faroese', 'finnish', 'flemish',
    'french', 'galician', 'georgian', 'german', 'greek', 'gujarati', 'haitian', 'haitian creole', 'hausa',
    'hawaiian', 'hebrew', 'hindi', 'hungarian', 'icelandic', 'indonesian', 'italian', 'japanese', 'javanese',
    'kannada', 'kazakh', 'khmer', 'korean', 'lao', 'latin', 'latvian', 'letzeburgesch', 'lingala', 'lithuanian',
    'luxembourgish', 'macedonian', 'malagasy', 'malay', 'malayalam', 'maltese', 'mandarin', 'maori', 'marathi',
    'moldavian', 'moldovan', 'mongolian', 'myanmar', 'nepali', 'norwegian', 'nynorsk', 'occitan', 'panjabi',
    'pashto', 'persian', 'polish', 'portuguese', 'punjabi', 'pushto', 'romanian', 'russian', 'sanskrit', 'serbian',
    'shona', 'sindhi', 'sinhala', 'sinhalese', 'slovak', 'slovenian', 'somali', 'spanish', 'sundanese', 'swahili',
    'swedish', 'tagalog', 'tajik', 'tamil', 'tatar', 'telugu', 'thai', 'tibetan', 'turkish', 'turkmen', 'ukrainian',
    'urdu', 'uzbek', 'valencian', 'vietnamese', 'welsh', 'yiddish', 'yoruba',
})
