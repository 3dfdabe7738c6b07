"""What replay learns about the memory as a whole: words and feelings per part, and insight.json."""

from __future__ import annotations

import functools
import math
import re
from collections import Counter

# Feelings in Korean stems (matched inside words, whatever the ending) and English words.
EMOTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "joy": (("기쁘", "기뻐", "행복", "신나", "신난", "즐거", "좋아", "설레"), ("happy", "glad", "joy", "excited", "fun", "delighted")),
    "sadness": (("슬퍼", "슬프", "슬픈", "우울", "외로", "눈물", "서운"), ("sad", "lonely", "depressed", "cry", "crying", "miss")),
    "anger": (("화나", "화가", "짜증", "열받", "억울"), ("angry", "annoyed", "furious", "mad", "frustrated")),
    "fear": (("무서", "무섭", "불안", "걱정", "두려"), ("afraid", "scared", "worried", "anxious", "fear", "nervous")),
    "love": (("사랑", "보고싶", "그리워"), ("love", "adore", "darling")),
    "gratitude": (("고마", "감사"), ("thank", "thanks", "grateful", "appreciate")),
    "surprise": (("놀라", "놀랐", "깜짝", "대박"), ("surprised", "wow", "amazing", "unexpected")),
    "tiredness": (("피곤", "지쳐", "지친", "힘들", "졸려"), ("tired", "exhausted", "sleepy", "burnout")),
}
_KOREAN_FEELINGS = [(stem, name) for name, (korean, _) in EMOTIONS.items() for stem in korean]
_ENGLISH_FEELINGS = {word: name for name, (_, english) in EMOTIONS.items() for word in english}

_WORD = re.compile(r"[가-힣]{2,}|[A-Za-z][A-Za-z'-]+")
# Endings and particles stripped from Korean words so "고양이를" and "고양이가" count as one.
_KOREAN_ENDINGS = sorted(
    [
        "은",
        "는",
        "이",
        "가",
        "을",
        "를",
        "에",
        "의",
        "도",
        "만",
        "와",
        "과",
        "로",
        "으로",
        "에서",
        "에게",
        "한테",
        "까지",
        "부터",
        "처럼",
        "보다",
        "이랑",
        "랑",
        "하고",
        "이야",
        "야",
        "요",
        "이요",
        "라고",
        "이라고",
        "라니",
        "라는",
        "이라는",
        "이에요",
        "예요",
        "에요",
        "했어",
        "했어요",
        "했는데",
        "했지만",
        "해요",
        "해서",
        "하고",
        "하는",
        "하면",
        "할까",
        "했지",
        "해",
        "했다",
        "한다",
        "합니다",
        "입니다",
        "이다",
        "인데",
        "인가",
        "거야",
        "거든",
        "네요",
        "어요",
        "아요",
        "지만",
        "는데",
    ],
    key=len,
    reverse=True,
)
_STOPWORDS = frozenset(
    [
        "the",
        "and",
        "for",
        "you",
        "that",
        "this",
        "with",
        "are",
        "was",
        "have",
        "not",
        "but",
        "what",
        "your",
        "can",
        "all",
        "just",
        "about",
        "from",
        "they",
        "will",
        "would",
        "there",
        "been",
        "were",
        "how",
        "when",
        "which",
        "their",
        "them",
        "then",
        "than",
        "also",
        "into",
        "more",
        "some",
        "could",
        "like",
        "want",
        "know",
        "think",
        "really",
        "okay",
        "yes",
        "그리고",
        "그래서",
        "그런데",
        "하지만",
        "그냥",
        "정말",
        "진짜",
        "너무",
        "조금",
        "이거",
        "그거",
        "저거",
        "이제",
        "오늘",
        "근데",
        "우리",
        "나는",
        "내가",
        "너는",
        "네가",
        "그럼",
        "있어",
        "없어",
        "있는",
        "없는",
        "같아",
        "같은",
        "어떻게",
        "이렇게",
        "그렇게",
        "무엇",
        "뭐야",
        "거야",
        "해줘",
        "알려줘",
        "있을까",
        "할게",
        "좋아",
        "좋은",
    ]
)


@functools.lru_cache(maxsize=200_000)
def _word(word: str) -> tuple[str | None, str | None]:
    """(content word or None for a stopword, feeling or None) of one word as written."""
    if word[0] >= "가":
        feeling = next((name for stem, name in _KOREAN_FEELINGS if stem in word), None)
        for ending in _KOREAN_ENDINGS:
            if word.endswith(ending) and len(word) - len(ending) >= 2:
                word = word[: -len(ending)]
                break
    else:
        word = word.lower()
        feeling = _ENGLISH_FEELINGS.get(word)
    content = None if word in _STOPWORDS or (len(word) < 3 and word[0] < "가") else word
    return content, feeling


def describe(text: str) -> tuple[Counter, Counter]:
    """(content words, feelings) of a text, counted.

    Content words are Korean words without their endings and English words lowercased;
    feelings come from the lexicon (a Korean stem anywhere in a word, an English word as
    a whole). Words are counted as written first, so each distinct word is looked at once.
    """
    words: Counter = Counter()
    feelings: Counter = Counter()
    for word, n in Counter(_WORD.findall(text)).items():
        content, feeling = _word(word)
        if content is not None:
            words[content] += n
        if feeling is not None:
            feelings[feeling] += n
    return words, feelings


def top_terms(counts: Counter, spread: Counter, days: int, k: int = 10) -> list[str]:
    """The k words most telling of a day among days: frequent that day, rare on the other
    days (tf-idf); spread says on how many days each word is found."""
    return [w for w, _ in sorted(counts.items(), key=lambda item: (-item[1] * math.log((1 + days) / spread[item[0]]), item[0]))[:k]]
