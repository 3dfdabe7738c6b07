"""A deterministic, realistic memory folder for search benchmarks, and its labelled dev set.

    .venv/bin/python bench/memory_gen.py OUT_DIR [--parts 760] [--lines-per-part 395]
        [--days 40] [--seed 0] [--devset bench/devset.jsonl] [--clean]

writes OUT_DIR/dayMMDD/<user>/partN.txt in the owner's format (see echo/memory/parsing.py): turns
that start with "나의 말:", "ChatGPT의 말:" or "에코의 말:" (the marker alone on its line or
followed by text), Korean and English small talk and work talk, multi-line answers with
markdown lists, code blocks carrying the chat page's copy buttons (label, "복사", "편집"),
"메모리 업데이트됨" notices, and turns that run on across part boundaries. The older days
are ChatGPT logs copied from the web page, the later ones Echo's own replies.

With --devset, every entry's fact is planted exactly once, as the text of one owner turn
followed by a short reply, at a pseudo-random place (under the entry's "user", default
origin). The generator fails if any filler text contains an entry's answer.

Same arguments, same bytes: every choice comes from random.Random seeded with strings.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from echo.memory.parsing import ECHO_MARKER, OLD_ASSISTANT_MARKER, USER_MARKER  # noqa: E402

OWNER = "origin"
OTHER_USERS = ("minji", "guest")
DEVSET_KEYS = ("id", "lang", "fact", "answer", "query", "kind")
DEVSET_PATH = Path(__file__).resolve().parent / "devset.jsonl"

# ---------------------------------------------------------------------------------------
# Korean helpers


def _batchim(word: str) -> int:
    """0: the word ends in a vowel, 1: in a consonant, 2: in ㄹ (as its reading goes)."""
    ch = word.rstrip()[-1]
    if "가" <= ch <= "힣":
        final = (ord(ch) - 0xAC00) % 28
        return 0 if final == 0 else (2 if final == 8 else 1)
    if ch.isdigit():
        return {"1": 2, "7": 2, "8": 2, "0": 1, "3": 1, "6": 1}.get(ch, 0)
    low = word.lower()
    if low.endswith("ng") or low[-1] in "mn":
        return 1
    if ch in "LR" or low.endswith("l"):
        return 2
    return 0


_PARTICLES = {
    "을": ("을", "를"),
    "이": ("이", "가"),
    "은": ("은", "는"),
    "과": ("과", "와"),
    "이랑": ("이랑", "랑"),
    "으로": ("으로", "로"),
    "이라": ("이라", "라"),
    "이야": ("이야", "야"),
}


def j(word: str, particle: str) -> str:
    """word + the particle form its last sound takes: j("코드", "을") -> "코드를"."""
    after_consonant, after_vowel = _PARTICLES[particle]
    b = _batchim(word)
    if particle == "으로":
        return word + ("으로" if b == 1 else "로")
    return word + (after_consonant if b else after_vowel)


@dataclass(frozen=True)
class Verb:
    stem: str  # 먹   (먹고, 먹다가, 먹자)
    a: str  # 먹어      (먹어요, 먹어서, 먹어야 돼)
    past: str  # 먹었  (먹었어, 먹었는데)
    pro: str  # 먹을   (먹을까?, 먹을 거야)
    intent: str  # 먹으 (먹으려고)
    pres: str  # 먹    (먹는데, 먹는 중이야)


def _verb(spec: str) -> Verb:
    return Verb(*spec.split("/"))


# Sentence endings: (tense, pattern). Tense p: past, f: future or proposal, n: any time.
FINAL_ENDINGS = (
    ("n", "{a}요"),
    ("p", "{past}어"),
    ("f", "{pro}까?"),
    ("p", "{past}거든"),
    ("f", "{a}야 돼"),
    ("f", "{stem}고 싶어"),
    ("f", "{pro} 거야"),
    ("p", "{past}어요"),
    ("f", "{a} 볼까 해"),
    ("n", "{pres}는 중이야"),
    ("p", "{past}나 봐"),
    ("f", "{stem}자"),
    ("p", "{past}었지"),
    ("p", "{past}어 ㅋㅋ"),
    ("f", "{intent}려고 해"),
    ("p", "{stem}긴 했어"),
    ("n", "{pres}는 편이야"),
    ("f", "{pro}래?"),
    ("p", "{past}던가?"),
    ("f", "{a}야겠다"),
)
LINK_ENDINGS = (
    ("p", "{past}는데"),
    ("p", "{past}지만"),
    ("p", "{past}더니"),
    ("n", "{stem}다가"),
    ("p", "{intent}려고 했는데"),
    ("p", "{stem}고 나서"),
    ("n", "{a}서"),
    ("n", "{pres}는데"),
    ("p", "{stem}긴 했는데"),
    ("n", "{stem}면서"),
)


def conj(verb: Verb, pattern: str) -> str:
    return pattern.format(stem=verb.stem, a=verb.a, past=verb.past, pro=verb.pro, intent=verb.intent, pres=verb.pres)


HA = _verb("하/해/했/할/하/하")
# (verb, objects): objects take 을/를 unless the verb is 가다 (에).
VERBS: tuple[tuple[Verb, tuple[str, ...]], ...] = (
    (
        _verb("먹/먹어/먹었/먹을/먹으/먹"),
        (
            "김치찌개",
            "된장찌개",
            "제육볶음",
            "비빔밥",
            "떡볶이",
            "라면",
            "샐러드",
            "파스타",
            "초밥",
            "냉면",
            "칼국수",
            "쌀국수",
            "샌드위치",
            "햄버거",
            "피자",
            "돈가스",
            "순댓국",
            "김밥",
            "만두",
            "카레",
            "부대찌개",
            "닭갈비",
            "콩국수",
            "볶음밥",
        ),
    ),
    (_verb("마시/마셔/마셨/마실/마시/마시"), ("아메리카노", "라떼", "녹차", "맥주", "와인", "하이볼", "레몬에이드", "생강차", "식혜", "유자차", "콜드브루")),
    (
        _verb("보/봐/봤/볼/보/보"),
        ("영화", "드라마", "다큐", "유튜브 영상", "공식 문서", "로그", "에러 메시지", "예능", "축구 경기", "전시회", "야구 중계", "뮤지컬"),
    ),
    (
        _verb("가/가/갔/갈/가/가"),
        ("카페", "도서관", "헬스장", "병원", "마트", "회사", "본가", "공원", "서점", "편의점", "미용실", "은행", "시장", "한강", "수영장", "동네 빵집"),
    ),
    (
        _verb("만들/만들어/만들었/만들/만들/만드"),
        ("대시보드", "스크립트", "발표 자료", "반찬", "케이크", "포트폴리오", "프로토타입", "체크리스트", "슬라이드", "단축키 설정"),
    ),
    (_verb("듣/들어/들었/들을/들으/듣"), ("팟캐스트", "강의", "플레이리스트", "재즈", "라디오", "오디오북", "새 앨범")),
    (_verb("읽/읽어/읽었/읽을/읽으/읽"), ("소설", "기술 블로그", "논문", "에세이", "만화책", "뉴스레터", "릴리스 노트", "설계 문서")),
    (_verb("사/사/샀/살/사/사"), ("운동화", "이어폰", "키보드", "책상", "우산", "선물", "수건", "가습기", "전기포트", "러닝화", "텀블러")),
    (_verb("고치/고쳐/고쳤/고칠/고치/고치"), ("버그", "테스트", "설정 파일", "문서 오타", "빌드 스크립트", "CSS", "타입 오류")),
    (_verb("찾/찾아/찾았/찾을/찾으/찾"), ("자료", "원인", "숙소", "맛집", "레퍼런스", "예제 코드", "중고 매물")),
    (_verb("쓰/써/썼/쓸/쓰/쓰"), ("일기", "회고", "보고서", "블로그 글", "메일", "테스트 코드", "README", "감사 카드")),
    (_verb("배우/배워/배웠/배울/배우/배우"), ("요가", "수영", "일본어", "러스트", "드럼", "사진", "스페인어", "제빵")),
    (_verb("돌리/돌려/돌렸/돌릴/돌리/돌리"), ("테스트", "벤치마크", "마이그레이션", "빨래", "배치 작업", "린터")),
    (_verb("올리/올려/올렸/올릴/올리/올리"), ("PR", "커밋", "사진", "이슈", "블로그 글", "발표 영상")),
    (_verb("끝내/끝내/끝냈/끝낼/끝내/끝내"), ("과제", "리뷰", "보고서", "이사 준비", "정산", "온보딩")),
)
# 하다 verbs: the noun joins the ending (정리했어), with one of its objects or none before it.
HA_VERBS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("정리", ("코드", "방", "책상 서랍", "일정", "메일함", "사진 폴더", "냉장고", "옷장", "가계부", "노션 페이지")),
    ("수정", ("코드", "서버 설정", "DB 스키마", "API 문서", "발표 자료", "이력서")),
    ("확인", ("로그", "메일함", "일정", "서버 설정", "택배 조회")),
    ("업데이트", ("의존성", "노션 페이지", "API 문서")),
    ("백업", ("사진 폴더", "DB 스키마", "노트북")),
    ("청소", ("방", "냉장고", "옷장", "화장실")),
    ("검토", ("코드", "발표 자료", "API 문서", "계약서")),
    ("준비", ("발표 자료", "면접", "도시락", "집들이")),
    ("예약", ("병원", "미용실", "숙소", "기차표")),
    ("설치", ("의존성", "새 드라이버", "모니터 암")),
    ("공부", ()),
    ("운동", ()),
    ("배포", ()),
    ("테스트", ()),
    ("연습", ()),
    ("요리", ()),
    ("산책", ()),
    ("리팩터링", ()),
    ("디버깅", ()),
    ("회의", ()),
    ("발표", ()),
    ("야근", ()),
    ("장보기", ()),
    ("빨래", ()),
    ("스트레칭", ()),
    ("복습", ()),
    ("통화", ()),
    ("계획", ()),
)

TIME_P = ("어제", "아까", "지난주에", "주말에", "방금", "오늘 아침에", "그저께", "점심 먹고", "퇴근하고", "새벽에", "어젯밤에", "지난 주말에")
TIME_F = ("내일", "다음 주에", "이따가", "주말에", "퇴근하고", "모레", "이번 달 안에", "오늘 저녁에", "조만간", "연휴에")
TIME_N = ("요즘", "오늘", "점심에", "저녁에", "가끔", "매일", "요새", "평일에는", "")

COMMENTS = (
    "생각보다 괜찮더라",
    "좀 별로였어",
    "시간이 훌쩍 갔어",
    "결국 다시 해야 할 것 같아",
    "뭔가 찝찝해",
    "기분이 좀 나아졌어",
    "별로 효과가 없었어",
    "내일 다시 봐야겠다",
    "네 생각은 어때?",
    "이게 맞는 건지 모르겠어",
    "의외로 금방 끝났어",
    "중간에 에러가 났어",
    "친구가 추천해 줘서 그런가 봐",
    "다들 좋다고 하더라",
    "솔직히 좀 귀찮았어",
    "그래도 뿌듯해",
    "비가 와서 좀 그랬어",
    "배터리가 다 돼서 멈췄어",
    "완전 만족스러워",
    "생각했던 거랑 달라서 당황했어",
    "다음엔 다르게 해 볼래",
    "이상하게 잘 안 되네",
    "덕분에 하루가 즐거웠어",
    "어떻게 생각해?",
    "조금 더 알아봐야겠어",
    "정신없었어",
    "예상보다 오래 걸렸어",
    "진짜 오랜만이었어",
    "팀장님이 좋아하셨어",
    "좀 더 일찍 할 걸 그랬어",
    "마음이 편해졌어",
    "이번엔 제대로 된 것 같아",
    "사람이 너무 많았어",
    "날씨가 좋아서 다행이었어",
    "재밌었는데 좀 피곤하다",
    "뭐가 문제인지 감이 안 와",
)

TECH_TOPICS = (
    "파이썬 제너레이터",
    "비동기 함수",
    "도커 볼륨",
    "Ray Serve",
    "쿠버네티스 인그레스",
    "Git rebase",
    "정규식",
    "SQL 인덱스",
    "캐시 무효화",
    "로깅 설정",
    "타입 힌트",
    "FastAPI 의존성 주입",
    "pytest 픽스처",
    "가상환경",
    "환경 변수",
    "CI 파이프라인",
    "데이터클래스",
    "임베딩 검색",
    "토크나이저",
    "양자화",
    "배치 처리",
    "유니코드 정규화",
    "파일 감시",
    "컨텍스트 매니저",
    "데코레이터",
    "웹소켓",
    "레이트 리밋",
    "커넥션 풀",
    "단위 테스트",
    "코드 리뷰",
    "브랜치 전략",
    "프롬프트 설계",
    "GPU 메모리",
    "스레드 풀",
    "역색인",
)
LIFE_TOPICS = (
    "홈트 루틴",
    "수면 습관",
    "식단 관리",
    "여행 계획",
    "이사 준비",
    "가계부 쓰기",
    "영어 공부",
    "명상",
    "시간 관리",
    "독서 습관",
    "선물 고르기",
    "자취 요리",
    "주말 계획",
    "집들이 준비",
    "다이어트",
    "저축 계획",
    "출퇴근 루틴",
    "스트레칭",
    "커피 줄이기",
    "휴가 계획",
    "이직 준비",
    "면접 준비",
    "책상 정리",
    "분리수거",
)
QUESTION_T = (
    "{t}{이} 정확히 뭐야?",
    "{t} 쉽게 설명해 줄 수 있어?",
    "{t}{을} 어떻게 시작하면 좋을까?",
    "{t}{이랑} {t2} 차이가 뭐야?",
    "{t} 관련해서 자주 하는 실수가 뭐가 있어?",
    "{t} 할 때 주의할 점 알려줘",
    "{t} 예시 하나만 보여줄래?",
    "{t} 때문에 고민인데 조언 좀 해줘",
    "요즘 {t}에 관심이 생겼는데 뭐부터 보면 돼?",
    "{t} 정리해 둔 거 다시 보여줄 수 있어?",
    "혹시 {t} 추천할 만한 자료 있어?",
    "{t}{은} 왜 필요한 거야?",
    "{t}{이랑} {t2} 같이 써도 돼?",
    "{t} 제대로 하고 있는 건지 봐줄래?",
    "{t} 처음 하는 사람한테 팁 좀 줘",
    "{t}{을} 하루에 얼마나 해야 효과가 있을까?",
    "{t} 너무 어려운데 핵심만 말해 줘",
    "{t} 단계별로 정리해 줄래?",
    "근데 {t}{은} 꼭 해야 돼?",
    "{t}{이} 잘 안 되는데 뭘 놓친 걸까?",
    "지난번에 말한 {t} 말인데, 다시 설명해 줘",
)
FILES = (
    "core/config.py",
    "app/main.py",
    "utils/io.py",
    "services/search.py",
    "scripts/deploy.sh",
    "tests/test_api.py",
    "worker/queue.py",
    "docker-compose.yml",
    "settings.yaml",
    "web/index.ts",
    "models/user.py",
    "api/routes.py",
    "jobs/cleanup.py",
    "lib/cache.py",
)
ERRORS = (
    "KeyError",
    "TimeoutError",
    "ImportError",
    "메모리 부족 에러",
    "404",
    "500 에러",
    "타입 에러",
    "인코딩 에러",
    "권한 에러",
    "순환 참조 경고",
    "deprecated 경고",
    "ConnectionResetError",
    "AttributeError",
    "무한 루프",
)
TEAMMATES = ("지훈", "수아", "태현", "은지", "도윤", "하은", "준호", "다은", "성민", "유진")
WORK_T = (
    "{file}에서 {err_i} 나는데 왜 그럴까?",
    "{file} 수정했는데 테스트가 몇 개 깨졌어",
    "배포 전에 {t} 한 번 더 {v}",
    "{mate}님이 리뷰에서 {t} 얘기를 했는데 무슨 뜻인지 모르겠어",
    "오늘 스탠드업에서 {t} 맡기로 했어",
    "{err} 로그가 계속 찍히는데 무시해도 될까?",
    "{file} 구조를 좀 바꾸고 싶은데 어디서부터 손대야 할까?",
    "{mate}님이랑 {t} 때문에 의견이 갈렸어",
    "{t} 적용하고 나서 {file_i} 느려진 것 같아",
    "스프린트 끝나기 전에 {t} {v}",
    "방금 {file} 커밋했는데 CI에서 {err_i} 떴어",
    "{t} 관련 티켓이 또 올라왔어, 오늘 안에 {v}",
)
FEELINGS = (
    "지쳤어",
    "우울해",
    "설레",
    "뿌듯해",
    "불안해",
    "심심해",
    "짜증 나",
    "행복해",
    "긴장돼",
    "멍해",
    "허전해",
    "들떠",
    "답답해",
    "외로워",
    "기운이 없어",
    "신나",
)
REASONS = ("야근", "마감", "날씨", "발표", "회의", "이사 준비", "시험", "월요일", "비", "감기", "면접", "장마", "연말", "인사 평가", "층간 소음", "출장")
FEEL_T = (
    "오늘 좀 {f}",
    "{r} 때문에 {f}",
    "요즘 {r}{이} 겹쳐서 많이 {f}",
    "왜 이렇게 {f} 모르겠어",
    "{r} 끝나니까 좀 {f}",
    "아 진짜 {f}",
    "그냥 이유 없이 {f}",
    "{r} 생각하면 벌써 {f}",
)
SHORT = (
    "고마워",
    "고마워!",
    "고마워 ㅎㅎ",
    "오케이",
    "ㅇㅋ",
    "좋아",
    "알겠어",
    "그렇구나",
    "응",
    "응응",
    "오 좋다",
    "ㅋㅋㅋ",
    "다시 해볼게",
    "잘 자",
    "굿",
    "완벽해",
    "ok",
    "음 그렇군",
    "그거 좋네",
    "헐 대박",
    "아하",
    "한 번 해볼게",
    "이해했어",
    "계속",
    "더 자세히",
    "ㄱㄱ",
    "그래",
    "잠깐만",
)

# Korean assistant pieces
OPENERS = (
    "좋은 질문이에요! {t}{을} 간단히 정리해 볼게요.",
    "{t}{은} 생각보다 단순해요. 핵심만 보면 이래요:",
    "네, {t}에 대해 설명해 드릴게요.",
    "{t}{이} 헷갈리는 건 당연해요. 하나씩 볼게요.",
    "물론이죠. {t} 관련해서 보통 이렇게 접근해요:",
    "{t}{은} 이렇게 나눠서 보면 이해가 쉬워요.",
    "그 부분 많이들 막혀요. {t}{은} 다음 순서로 확인해 보세요.",
    "좋아요, {t}부터 차근차근 가 볼게요.",
)
ASPECTS = ("개념", "장점", "단점", "주의할 점", "예시", "팁", "성능", "테스트", "디버깅", "정리", "순서", "대안", "자주 하는 실수", "체크리스트", "우선순위")
EXPLAIN_T = (
    "{x}{을} 먼저 확인하는 게 좋아요.",
    "{x}{이} 바뀌면 {y}도 같이 바뀌어요.",
    "처음에는 {x}부터 작게 시작해 보세요.",
    "{x}{은} 한 번만 설정해 두면 돼요.",
    "{x}{과} {y을} 분리하면 관리가 쉬워져요.",
    "{x}{을} 너무 자주 바꾸면 오히려 역효과가 날 수 있어요.",
    "{x}{은} {y}보다 가볍지만 제약이 있어요.",
    "{x}{이} 느리다면 {y을} 의심해 보세요.",
    "매번 {x}{을} 기록해 두면 나중에 비교하기 좋아요.",
    "{x}{은} 기본값 그대로 두는 편이 안전해요.",
    "{x}{을} 쓰기 전에 {y이} 준비됐는지 보세요.",
    "작은 예제로 {x}{을} 직접 돌려 보는 게 제일 빨라요.",
    "{x} 대신 {y을} 쓰는 방법도 있어요.",
    "{x}{은} 습관이 되기 전까지 알림을 맞춰 두면 편해요.",
)
CLOSERS = (
    "더 궁금한 거 있으면 말해 주세요!",
    "도움이 됐으면 좋겠어요 😊",
    "필요하면 예제도 더 만들어 드릴게요.",
    "직접 해 보시고 결과 알려 주세요.",
    "이 정도면 시작하기엔 충분할 거예요.",
    "막히는 부분 있으면 다시 물어봐요.",
    "천천히 해도 괜찮아요.",
    "다음 단계도 같이 정리해 볼까요?",
)
SHORT_REPLIES = (
    "천만에요! 또 필요하면 불러 주세요.",
    "좋아요 😊",
    "네, 언제든지요.",
    "잘 자요! 내일 봐요.",
    "좋아요, 해 보고 알려 주세요.",
    "네! 계속 이어서 볼게요.",
    "ㅎㅎ 다행이에요.",
    "그럼요. 천천히 해요.",
    "네, 기다릴게요.",
    "알겠어요!",
)
EMPATHY = (
    "많이 힘들었겠어요.",
    "그럴 때가 있죠.",
    "그 마음 충분히 이해해요.",
    "오늘 하루 정말 고생 많았어요.",
    "그런 날엔 쉬어 가도 괜찮아요.",
    "와, 그거 정말 좋은 소식이네요!",
    "기분이 오락가락할 수 있어요.",
)
SELF_CARE = (
    "따뜻한 차 한 잔",
    "가벼운 산책",
    "일찍 자기",
    "좋아하는 음악 듣기",
    "친구랑 통화하기",
    "샤워하고 눕기",
    "십 분 스트레칭",
    "휴대폰 내려놓기",
    "좋아하는 간식 먹기",
)
REACTIONS = ("오, 좋네요!", "그랬군요!", "재밌었겠어요.", "오 부럽네요 ㅎㅎ", "고생했어요.", "잘했네요!", "그럴 수 있죠.", "오 그거 괜찮은데요?")
CAUSES = (
    "경로 설정이 잘못됐기",
    "버전이 서로 맞지 않기",
    "캐시가 남아 있기",
    "권한이 부족하기",
    "환경 변수가 비어 있기",
    "입력 데이터 형식이 다르기",
    "타임아웃이 너무 짧기",
    "초기화 순서가 꼬였기",
)
STEPS = (
    "에러가 난 줄의 변수 값을 출력해 보세요.",
    "가상환경을 새로 만들고 의존성을 다시 설치해 보세요.",
    "설정 파일의 경로가 실제로 있는지 확인해 보세요.",
    "최근 커밋과 비교해서 달라진 부분을 찾아보세요.",
    "로그 레벨을 DEBUG로 올려서 다시 실행해 보세요.",
    "테스트 하나만 따로 돌려서 재현되는지 보세요.",
    "캐시 폴더를 지우고 다시 빌드해 보세요.",
    "타임아웃 값을 늘려서 같은 에러가 나는지 보세요.",
    "입력 데이터를 작은 샘플로 줄여서 확인해 보세요.",
    "의존성 버전을 고정해 두세요.",
)

# English pieces
E_TOPICS = (
    "async generators",
    "Docker volumes",
    "Ray Serve deployments",
    "git rebase",
    "regular expressions",
    "database indexes",
    "cache invalidation",
    "structured logging",
    "type hints",
    "dependency injection",
    "pytest fixtures",
    "virtual environments",
    "CI pipelines",
    "dataclasses",
    "vector search",
    "tokenizers",
    "quantization",
    "batch inference",
    "Unicode normalization",
    "file watchers",
    "context managers",
    "decorators",
    "websockets",
    "rate limiting",
    "connection pools",
    "code reviews",
    "prompt design",
    "meal prepping",
    "sleep hygiene",
    "budgeting",
    "trip planning",
    "learning Korean",
    "morning routines",
    "strength training",
    "time blocking",
    "moving apartments",
    "job interviews",
    "houseplants",
)
E_OWNER_T = (
    "Can you explain {t} in simple terms?",
    "What's the difference between {t} and {t2}?",
    "I tried {t} yesterday but it didn't really work out.",
    "How should I get started with {t}?",
    "Quick question: is it okay to skip {t} for now?",
    "I'm getting a {err} when I run {cmd}, any idea why?",
    "Any tips for {t}? I keep getting stuck.",
    "Could you give me a short example of {t}?",
    "What are common mistakes with {t}?",
    "Is {t} worth the effort for a small project?",
    "I spent the whole afternoon on {t} and I'm exhausted.",
    "Remind me later to look into {t} again.",
    "My teammate {mate} suggested {t}, what do you think?",
    "Can you summarize {t} in a few bullet points?",
    "Honestly I'm not sure I understand {t} at all.",
    "Wait, how does {t} relate to {t2}?",
)
E_ERRORS = (
    "KeyError",
    "TimeoutError",
    "ModuleNotFoundError",
    "permission denied error",
    "404",
    "segfault",
    "UnicodeDecodeError",
    "connection refused error",
    "out of memory error",
)
E_CMDS = ("pytest -q", "make serve", "docker compose up", "npm run build", "python app.py", "ray start --head", "pip install -e .", "git push")
E_MATES = ("Alex", "Sam", "Jordan", "Taylor", "Chris", "Morgan", "Dana", "Riley")
E_SHORT = ("ok", "thanks!", "got it", "makes sense", "Thank you so much", "cool", "perfect, thanks", "hmm okay", "nice", "lol", "wait what", "sounds good")
E_OPENERS = (
    "Sure! Here's a quick overview of {t}:",
    "Good question. {T} boils down to a few ideas:",
    "Happy to help with {t}. The short version:",
    "Let's break {t} down step by step.",
    "Totally understandable, this trips up a lot of people. Here's how I'd think about {t}:",
    "Great, {t} is a fun one. A few points:",
)
E_ASPECTS = ("Concept", "Why it matters", "Pitfall", "Example", "Tip", "Performance", "Testing", "Debugging", "Alternatives", "Next step")
E_EXPLAIN_T = (
    "Start small and check {x} before anything else.",
    "If you change {x}, you usually have to revisit {y} too.",
    "Keep {x} separate from {y} so each stays easy to reason about.",
    "Most issues with {x} come from unclear assumptions about {y}.",
    "Measure {x} first; guessing tends to mislead.",
    "Write down what {x} is supposed to do in one sentence.",
    "Prefer the defaults for {x} until you have a reason not to.",
    "If {x} feels slow, look at {y} before rewriting everything.",
    "A tiny example with {x} teaches more than a long tutorial.",
    "Don't try to perfect {x} on day one.",
)
E_CLOSERS = (
    "Let me know if you want a longer example!",
    "Hope that helps.",
    "Want me to go deeper on any of these?",
    "Try it out and tell me how it goes.",
    "That should be enough to get you going.",
)
E_SHORT_REPLIES = ("You're welcome!", "Anytime.", "Glad that helped!", "Sounds good, ping me whenever.", "No problem at all.", "Great, let's keep going.")

# Code blocks
PY_NAMES = ("load", "parse", "save", "fetch", "merge", "clean", "count", "group", "index", "score", "split", "render")
PY_NOUNS = ("items", "rows", "users", "records", "lines", "events", "tokens", "parts", "orders", "logs", "chunks")
PY_CONDS = ("{v} is None", "not {v}", "len({v}) > limit", '{v}.get("active")', '{v}.startswith("#")', "key in seen", "{v} in cache")
PY_ACTIONS = (
    "continue",
    "result.append({v})",
    "seen.add(key)",
    "cache[key] = {v}",
    "counts[key] += 1",
    'logger.info("skip %s", key)',
    "result.extend({v})",
    "break",
)
BASH_CMDS = (
    "python -m venv .venv",
    "source .venv/bin/activate",
    "pip install -r requirements.txt",
    "git checkout -b fix/{n}",
    "git rebase -i HEAD~3",
    "docker compose up -d",
    "docker compose logs -f api",
    "python -m pytest -q tests/test_{n}.py",
    "export LOG_LEVEL=DEBUG",
    "make lint",
    "ls -la logs/",
    'grep -rn "TODO" src/',
    "du -sh data/",
    "tail -n 50 logs/app.log",
    "curl -s localhost:8000/health",
    "ray status",
    "kubectl get pods -n staging",
    "git log --oneline | head",
)
JSON_KEYS = ("name", "version", "timeout", "retries", "debug", "port", "workers", "batch_size", "model", "cache_dir")
JSON_VALUES = ('"echo"', '"0.3.1"', "30", "3", "false", "8000", "4", "16", '"small"', '".cache"', "true", "null")
SQL_TABLES = ("users", "orders", "events", "sessions", "payments", "notes")
CODE_LABELS = ("python", "python", "python", "bash", "bash", "json", "yaml", "sql", "javascript")


def _python_code(rng: random.Random) -> list[str]:
    name, noun = rng.choice(PY_NAMES), rng.choice(PY_NOUNS)
    var = noun[:-1] if noun.endswith("s") else noun
    lines = [
        f"def {name}_{noun}({noun}, limit=10):",
        f'    """{name.capitalize()} the {noun}."""',
        "    result, seen = [], set()",
        f"    for {var} in {noun}:",
        f"        key = str({var})",
    ]
    for _ in range(rng.randint(1, 3)):
        lines.append(f"        if {rng.choice(PY_CONDS).format(v=var)}:")
        lines.append(f"            {rng.choice(PY_ACTIONS).format(v=var)}")
    lines.append("    return result")
    if rng.random() < 0.4:
        lines += ["", "", 'if __name__ == "__main__":', f"    print({name}_{noun}([]))"]
    return lines


def _code(rng: random.Random, label: str) -> list[str]:
    if label == "python":
        return _python_code(rng)
    if label == "bash":
        n = rng.choice(PY_NOUNS)
        return [c.format(n=n) for c in rng.sample(BASH_CMDS, rng.randint(2, 5))]
    if label == "json":
        keys = rng.sample(JSON_KEYS, rng.randint(3, 6))
        body = [f'  "{k}": {rng.choice(JSON_VALUES)}' for k in keys]
        return ["{", *[line + "," for line in body[:-1]], body[-1], "}"]
    if label == "yaml":
        keys = rng.sample(JSON_KEYS, rng.randint(3, 5))
        return [f"{k}: {rng.choice(JSON_VALUES).strip(chr(34))}" for k in keys]
    if label == "sql":
        table = rng.choice(SQL_TABLES)
        return [
            f"SELECT id, created_at FROM {table}",
            "WHERE created_at > NOW() - INTERVAL '7 days'",
            f"ORDER BY created_at DESC LIMIT {rng.choice((10, 20, 50, 100))};",
        ]
    name = rng.choice(PY_NAMES)
    return [f"async function {name}(url) {{", "  const res = await fetch(url);", "  if (!res.ok) throw new Error(res.statusText);", "  return res.json();", "}"]


# ---------------------------------------------------------------------------------------
# Conversation


class Conversation:
    """Exchanges of one day/user folder: lists of lines, owner first, then the assistant."""

    def __init__(self, rng: random.Random, assistant: str, buttons: bool, english: float) -> None:
        self.rng = rng
        self.assistant = assistant  # the assistant's marker
        self.buttons = buttons  # copied from the web page: code blocks carry copy buttons
        self.english = english
        self.last_question: tuple[str, list[str]] | None = None

    # markers -------------------------------------------------------------------------
    def turn(self, marker: str, body: list[str], alone: float = 0.5) -> list[str]:
        if len(body) > 1 or self.rng.random() < alone or not body[0]:
            return [marker, *body]
        return [f"{marker} {body[0]}"]

    def owner(self, body: list[str]) -> list[str]:
        return self.turn(USER_MARKER, body, alone=0.55)

    def reply(self, body: list[str]) -> list[str]:
        rng = self.rng
        if self.buttons and rng.random() < 0.04:
            return [self.assistant, "메모리 업데이트됨", *body]
        if len(body) == 1:
            return self.turn(self.assistant, body, alone=0.6)
        if rng.random() < 0.25:  # first line on the marker's line, the rest below
            return [f"{self.assistant} {body[0]}", *body[1:]]
        return [self.assistant, *body]

    def code_block(self, lang: str | None = None) -> list[str]:
        rng = self.rng
        label = lang or rng.choice(CODE_LABELS)
        code = _code(rng, label)
        if self.buttons:
            return [label, "복사", "편집", *code]
        return [f"```{label}", *code, "```"]

    # Korean owner --------------------------------------------------------------------
    def _activity(self) -> str:
        rng = self.rng
        if rng.random() < 0.3:
            noun, objects = rng.choice(HA_VERBS)
            verb = Verb(noun + HA.stem, noun + HA.a, noun + HA.past, noun + HA.pro, noun + HA.intent, noun + HA.pres)
            obj = j(rng.choice(objects), "을") + " " if objects and rng.random() < 0.7 else ""
        else:
            verb, objects = rng.choice(VERBS)
            word = rng.choice(objects)
            obj = word + "에 " if verb.stem == "가" else j(word, "을") + " "
        if rng.random() < 0.45:
            tense, pattern = rng.choice(LINK_ENDINGS)
            when = self._time(tense)
            return f"{when}{obj}{conj(verb, pattern)} {rng.choice(COMMENTS)}"
        tense, pattern = rng.choice(FINAL_ENDINGS)
        return f"{self._time(tense)}{obj}{conj(verb, pattern)}"

    def _time(self, tense: str) -> str:
        rng = self.rng
        pool = TIME_N if rng.random() < 0.3 else (TIME_P if tense == "p" else TIME_F if tense == "f" else TIME_N)
        when = rng.choice(pool)
        return when + " " if when else ""

    def _question(self, topics: tuple[str, ...]) -> tuple[str, str]:
        rng = self.rng
        t, t2 = rng.sample(topics, 2)
        template = rng.choice(QUESTION_T)
        return t, template.format(t=t, t2=t2, **{p: j(t, p)[len(t) :] for p in ("이", "을", "은", "이랑")})

    def _work(self) -> tuple[str, list[str]]:
        rng = self.rng
        t, err, f = rng.choice(TECH_TOPICS), rng.choice(ERRORS), rng.choice(FILES)
        v = conj(HA, rng.choice(("{a}야 돼", "{intent}려고", "{pro}까?", "{a} 볼게", "{a}야 할 것 같아")))
        text = rng.choice(WORK_T).format(file=f, err=err, t=t, v="확인" + v, mate=rng.choice(TEAMMATES), err_i=j(err, "이"), file_i=j(f, "이"))
        body = [text]
        if rng.random() < 0.2:  # a pasted traceback
            body += [
                "Traceback (most recent call last):",
                f'  File "{f if f.endswith(".py") else "app/main.py"}", line {rng.choice((12, 27, 58, 91, 133, 208))}, in {rng.choice(PY_NAMES)}',
                f"    {rng.choice(PY_NOUNS)} = {rng.choice(PY_NAMES)}_{rng.choice(PY_NOUNS)}(config)",
                f"{err if err.isascii() else 'RuntimeError'}: {rng.choice(('unexpected value', 'not found', 'timed out'))}",
            ]
        return t, body

    def _feeling(self) -> str:
        rng = self.rng
        r = rng.choice(REASONS)
        return rng.choice(FEEL_T).format(f=rng.choice(FEELINGS), r=r, 이=j(r, "이")[len(r) :])

    # Korean assistant ----------------------------------------------------------------
    def _explain(self, topics: tuple[str, ...]) -> str:
        rng = self.rng
        x, y = rng.sample(topics, 2)
        return rng.choice(EXPLAIN_T).format(x=x, y=y, y을=j(y, "을"), y이=j(y, "이"), **{p: j(x, p)[len(x) :] for p in ("이", "을", "은", "과")})

    def _answer(self, t: str, topics: tuple[str, ...]) -> list[str]:
        rng = self.rng
        body = [rng.choice(OPENERS).format(t=t, **{p: j(t, p)[len(t) :] for p in ("이", "을", "은")}), ""]
        numbered = rng.random() < 0.5
        for i, aspect in enumerate(rng.sample(ASPECTS, rng.randint(2, 5)), 1):
            point = self._explain(topics)
            body.append(f"{i}. **{aspect}**: {point}" if numbered else f"- **{aspect}**: {point}")
            if rng.random() < 0.25:
                body.append(f"   - {self._explain(topics)}")
        if topics is TECH_TOPICS and rng.random() < 0.45:
            body += ["", "예를 들면 이렇게 할 수 있어요:", "", *self.code_block(), ""]
        else:
            body.append("")
        body.append(rng.choice(CLOSERS))
        return body

    def _fix(self, err: str | None, where: str) -> list[str]:
        rng = self.rng
        cause = rng.choice(CAUSES)
        first = f"에러 메시지를 보면 {j(err, '은')} 보통 {cause} 때문에 나요." if err else f"{where} 쪽은 보통 {cause} 때문에 문제가 생겨요."
        body = [first, "", "확인해 볼 순서:"]
        body += [f"{i}. {s}" for i, s in enumerate(rng.sample(STEPS, rng.randint(2, 4)), 1)]
        if rng.random() < 0.6:
            body += ["", *self.code_block(rng.choice(("bash", "python"))), ""]
        body.append(
            rng.choice(
                ("이렇게 해도 안 되면 전체 로그를 보여 주세요.", "결과 알려 주시면 다음 단계 같이 봐요.", "재현되는 최소 예제가 있으면 더 빨리 찾을 수 있어요.")
            )
        )
        return body

    def _comfort(self) -> list[str]:
        rng = self.rng
        body = [rng.choice(EMPATHY)]
        if rng.random() < 0.7:
            care = rng.choice(SELF_CARE)
            body.append(f"오늘은 {j(care, '이라')}도 해 보는 건 어때요?")
        if rng.random() < 0.4:
            body += ["", "- 지금 제일 신경 쓰이는 게 뭔지 적어 보기", "- 내일 할 일 딱 세 개만 정하기", "- 잠들기 전에 화면 멀리하기"][: rng.randint(2, 4)]
        return body

    # English -------------------------------------------------------------------------
    def _english(self) -> list[str]:
        rng = self.rng
        if rng.random() < 0.15:
            return self.owner([rng.choice(E_SHORT)]) + self.reply([rng.choice(E_SHORT_REPLIES)])
        t, t2 = rng.sample(E_TOPICS, 2)
        q = rng.choice(E_OWNER_T).format(t=t, t2=t2, err=rng.choice(E_ERRORS), cmd=rng.choice(E_CMDS), mate=rng.choice(E_MATES))
        body = [rng.choice(E_OPENERS).format(t=t, T=t[0].upper() + t[1:]), ""]
        for aspect in rng.sample(E_ASPECTS, rng.randint(2, 5)):
            x, y = rng.sample(E_TOPICS, 2)
            body.append(f"- **{aspect}**: {rng.choice(E_EXPLAIN_T).format(x=x, y=y)}")
        if rng.random() < 0.3:
            body += ["", *self.code_block(), ""]
        else:
            body.append("")
        body.append(rng.choice(E_CLOSERS))
        return self.owner([q]) + self.reply(body)

    # one exchange --------------------------------------------------------------------
    def exchange(self) -> list[str]:
        rng = self.rng
        if rng.random() < self.english:
            return self._english()
        roll = rng.random()
        if roll < 0.03 and self.last_question:  # the same question copied again
            t, body = self.last_question
            return self.owner(body) + self.reply(self._answer(t, TECH_TOPICS if t in TECH_TOPICS else LIFE_TOPICS))
        if roll < 0.17:
            return self.owner([rng.choice(SHORT)]) + self.reply([rng.choice(SHORT_REPLIES)])
        if roll < 0.42:
            topics = TECH_TOPICS if rng.random() < 0.6 else LIFE_TOPICS
            t, q = self._question(topics)
            self.last_question = (t, [q])
            return self.owner([q]) + self.reply(self._answer(t, topics))
        if roll < 0.6:
            t, body = self._work()
            err = next((e for e in ERRORS if e in body[0]), None)
            where = next((f for f in FILES if f in body[0]), "그")
            answer = self._answer(t, TECH_TOPICS) if err is None and t in body[0] else self._fix(err, where)
            return self.owner(body) + self.reply(answer)
        if roll < 0.72:
            return self.owner([self._feeling()]) + self.reply(self._comfort())
        # daily life: one or two lines from the owner, a short reaction
        body = [self._activity()]
        if rng.random() < 0.25:
            body.append(self._activity())
        out = self.owner(body)
        if rng.random() < 0.12:  # a second message before the answer
            out += self.owner([self._activity()])
        reaction = [rng.choice(REACTIONS)]
        if rng.random() < 0.5:
            reaction.append(
                rng.choice(("그다음엔 뭐 했어요?", "어땠는지 더 들려줘요.", "다음에도 또 해 봐요.", "무리하지는 말고요.", "기록해 두면 나중에 재밌을 거예요."))
            )
        return out + self.reply(reaction)

    def fact(self, text: str, lang: str, inline: bool) -> list[str]:
        """The owner's fact as one turn, then a short reply that never repeats it."""
        rng = self.rng
        owner = [f"{USER_MARKER} {text}"] if inline else [USER_MARKER, text]
        if lang == "ko":
            reply = [
                rng.choice(
                    (
                        "그랬군요. 기억해 둘게요.",
                        "오, 그런 일이 있었군요! 잘 기억해 둘게요.",
                        "알려줘서 고마워요. 나중에 필요하면 다시 꺼내 볼게요.",
                        "좋은 추억이네요 😊",
                        "그렇군요. 메모해 둘게요.",
                    )
                )
            ]
        else:
            reply = [
                rng.choice(
                    (
                        "Got it, I'll keep that in mind.",
                        "Thanks for sharing that!",
                        "Noted. Let me know if you want a reminder later.",
                        "That sounds like a lovely memory.",
                    )
                )
            ]
        if self.buttons and rng.random() < 0.4:
            return owner + [self.assistant, "메모리 업데이트됨", *reply]
        return owner + self.turn(self.assistant, reply, alone=0.6)


# ---------------------------------------------------------------------------------------
# Layout and generation


@dataclass
class Folder:
    day: str  # dayMMDD
    user: str
    index: int  # the day's position, 0-based
    lengths: list[int]  # lines of each part; only the last may be short
    plants: list[tuple[int, dict]] = field(default_factory=list)  # (target line, 0-based in folder, entry)


def _days(days: int) -> list[str]:
    if not 1 <= days <= 365:
        raise ValueError(f"days must be 1..365, got {days}")
    start = date(2023, 9, 1) if days <= 122 else date(2023, 1, 1)  # one year: dayMMDD sorts in order
    return [(start + timedelta(n)).strftime("day%m%d") for n in range(days)]


def _layout(parts: int, days: int, lpp: int, seed: int, users: set[str]) -> list[Folder]:
    rng = random.Random(f"{seed}:layout")
    names = _days(min(days, parts))
    others = sorted((set(OTHER_USERS) | users) - {OWNER}, key=lambda u: (u not in OTHER_USERS, u))
    n_other = 0
    if parts >= len(names) + 2:
        n_other = min(parts - len(names), max(len(others), round(parts * 0.1)))
    counts: dict[tuple[int, str], int] = {}
    share = [2.0 if u == "minji" else 1.0 for u in others]
    budget = [max(1, round(n_other * s / sum(share))) for s in share] if n_other else [0] * len(others)
    while sum(budget) > n_other and max(budget) > 1:
        budget[budget.index(max(budget))] -= 1
    for user, left in zip(others, budget):
        free = list(range(len(names)))
        rng.shuffle(free)
        while left > 0:
            day = free.pop() if free else rng.randrange(len(names))
            take = min(left, rng.randint(1, 4))
            counts[(day, user)] = counts.get((day, user), 0) + take
            left -= take
    n_origin = parts - sum(counts.values())
    weights = [rng.uniform(0.4, 1.6) for _ in names]
    origin = [1] * len(names)
    for day in rng.choices(range(len(names)), weights=weights, k=n_origin - len(names)):
        origin[day] += 1
    folders = []
    for day, name in enumerate(names):
        plan = [(OWNER, origin[day])] + [(u, counts[(day, u)]) for u in others if (day, u) in counts]
        for user, n in plan:
            last = lpp if rng.random() < 0.35 else rng.randint(max(1, lpp // 5), lpp)
            folders.append(Folder(name, user, day, [lpp] * (n - 1) + [last]))
    return folders


def _check_facts(facts: list[dict]) -> None:
    ids, answers = set(), set()
    for entry in facts:
        for key in ("id", "fact", "answer"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise ValueError(f"dev set entry without {key!r}: {entry}")
        if entry["id"] in ids or entry["answer"] in answers:
            raise ValueError(f"duplicate id or answer: {entry['id']}")
        ids.add(entry["id"])
        answers.add(entry["answer"])
        if "\n" in entry["fact"] or entry["fact"].count(entry["answer"]) != 1:
            raise ValueError(f"{entry['id']}: the answer must occur exactly once in a one-line fact")
    for entry in facts:
        for other in facts:
            if other is not entry and entry["answer"] in other["fact"]:
                raise ValueError(f"{entry['id']}: its answer {entry['answer']!r} also occurs in {other['id']}'s fact")


def _plant(folders: list[Folder], facts: list[dict], seed: int) -> None:
    """Spread the facts over their users' parts: one stratum of parts per fact, shuffled."""
    rng = random.Random(f"{seed}:facts")
    by_user: dict[str, list[dict]] = {}
    for entry in facts:
        by_user.setdefault(entry.get("user") or OWNER, []).append(entry)
    for user, entries in sorted(by_user.items()):
        slots = [(f, p) for f in folders if f.user == user for p in range(len(f.lengths))]
        if not slots:
            raise ValueError(f"no folder for user {user!r}: raise --parts")
        order = list(range(len(entries)))
        rng.shuffle(order)
        for rank, k in enumerate(order):
            lo, hi = rank * len(slots) // len(entries), max(rank * len(slots) // len(entries) + 1, (rank + 1) * len(slots) // len(entries))
            folder, part = slots[rng.randrange(lo, hi)]
            lpp = folder.lengths[0]
            offset = rng.randint(0, max(0, folder.lengths[part] - 60))
            folder.plants.append((part * lpp + offset, entries[k]))
    for folder in folders:
        folder.plants.sort(key=lambda plant: plant[0])


FACT_LINES = 6  # an upper bound of one planted exchange


def _folder_lines(folder: Folder, lpp: int, seed: int, n_days: int) -> tuple[list[str], list[dict]]:
    rng = random.Random(f"{seed}:{folder.day}:{folder.user}")
    if folder.user == OWNER:
        echo_era = folder.index >= round(n_days * 0.65)
        english = 0.12
    else:
        echo_era, english = True, (0.5 if folder.user == "guest" else 0.15)
    conv = Conversation(rng, ECHO_MARKER if echo_era else OLD_ASSISTANT_MARKER, not echo_era, english)
    total, capacity = sum(folder.lengths), lpp * len(folder.lengths)
    pending = list(folder.plants)
    lines: list[str] = []
    placed: list[dict] = []

    def emit_fact() -> None:
        _, entry = pending.pop(0)
        at = len(lines)
        inline = rng.random() < 0.4 or at % lpp == lpp - 1  # never split marker and text
        lines.extend(conv.fact(entry["fact"], entry.get("lang", "ko"), inline))
        text_at = at if inline else at + 1
        placed.append(
            {
                "id": entry["id"],
                "user": folder.user,
                "path": f"{folder.day}/{folder.user}/part{at // lpp + 1}.txt",
                "line": at % lpp + 1,
                "text_line": text_at % lpp + 1,
            }
        )

    while len(lines) < total:
        if pending and len(lines) >= pending[0][0]:
            emit_fact()
            continue
        exchange = conv.exchange()
        if pending and len(lines) + len(exchange) + FACT_LINES * len(pending) > total:
            emit_fact()
            continue
        lines.extend(exchange)
    while pending:  # only when the folder is too small for its facts
        emit_fact()
    full_last = folder.lengths[-1] == lpp
    lines = lines[: (total if full_last else capacity)]
    return lines, placed


def generate_memory(
    root: Path,
    *,
    parts: int = 760,
    lines_per_part: int = 395,
    days: int = 40,
    seed: int = 0,
    facts: list[dict] | None = None,
) -> dict:
    """Write root/dayMMDD/<user>/partN.txt and return a summary.

    facts: dev set entries (load_devset); each "fact" is planted once as an owner turn,
    under entry["user"] when given, else origin. Raises ValueError when the filler or a
    reply contains an answer, or the facts are not distinct. The summary: parts, lines,
    days, users ({user: parts}), facts_planted, first_day, last_day, seed, lines_per_part,
    and placements ([{id, user, path, line, text_line}], line numbers 1-based in the part).
    """
    if parts < 1 or lines_per_part < 10:
        raise ValueError("need parts >= 1 and lines_per_part >= 10")
    root = Path(root)
    facts = list(facts or [])
    _check_facts(facts)
    users = {entry.get("user") or OWNER for entry in facts}
    folders = _layout(parts, days, lines_per_part, seed, users)
    _plant(folders, facts, seed)
    n_days = len({f.day for f in folders})
    answers = [entry["answer"] for entry in facts]
    summary_users: dict[str, int] = {}
    placements: list[dict] = []
    n_lines = n_parts = 0
    for folder in folders:
        lines, placed = _folder_lines(folder, lines_per_part, seed, n_days)
        text = "\n".join(lines)
        expected = {entry["answer"] for _, entry in folder.plants}
        for answer in answers:
            found = text.count(answer)
            if found != (1 if answer in expected else 0):
                raise ValueError(
                    f"answer {answer!r} occurs {found} times in {folder.day}/{folder.user} "
                    f"(filler must never contain an answer); change the answer or the vocabulary"
                )
        out = root / folder.day / folder.user
        out.mkdir(parents=True, exist_ok=True)
        for number, start in enumerate(range(0, len(lines), lines_per_part), 1):
            chunk = lines[start : start + lines_per_part]
            (out / f"part{number}.txt").write_text("\n".join(chunk) + "\n", encoding="utf-8", newline="\n")
            n_parts += 1
        n_lines += len(lines)
        summary_users[folder.user] = summary_users.get(folder.user, 0) + -(-len(lines) // lines_per_part)
        placements += placed
    return {
        "parts": n_parts,
        "lines": n_lines,
        "days": n_days,
        "users": dict(sorted(summary_users.items(), key=lambda item: (item[0] != OWNER, item[0]))),
        "facts_planted": len(placements),
        "first_day": folders[0].day,
        "last_day": folders[-1].day,
        "seed": seed,
        "lines_per_part": lines_per_part,
        "placements": placements,
    }


def load_devset(path: Path | str = DEVSET_PATH) -> list[dict]:
    """The dev set's entries, one JSON object a line: id, lang, fact, answer, query, kind (and
    optionally user). Raises ValueError on a malformed entry, a duplicate id, or an answer
    missing from its fact or present in its query."""
    entries, ids = [], set()
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        entry = json.loads(line)
        missing = [k for k in DEVSET_KEYS if not isinstance(entry.get(k), str) or not entry[k]]
        if missing:
            raise ValueError(f"{path}:{number}: missing {missing}")
        if entry["id"] in ids:
            raise ValueError(f"{path}:{number}: duplicate id {entry['id']}")
        if entry["answer"] not in entry["fact"] or entry["answer"] in entry["query"]:
            raise ValueError(f"{path}:{number}: the answer must be in the fact and not in the query")
        ids.add(entry["id"])
        entries.append(entry)
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--parts", type=int, default=760)
    parser.add_argument("--lines-per-part", type=int, default=395)
    parser.add_argument("--days", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--devset", type=Path, help="plant this dev set's facts (e.g. bench/devset.jsonl)")
    parser.add_argument("--clean", action="store_true", help="first delete OUT_DIR's dayMMDD folders")
    args = parser.parse_args(argv)
    existing = sorted(args.out_dir.glob("day[0-9][0-9][0-9][0-9]")) if args.out_dir.is_dir() else []
    if existing and not args.clean:
        parser.error(f"{args.out_dir} already holds day folders ({existing[0].name} ...); use --clean")
    for folder in existing:
        shutil.rmtree(folder)
    facts = load_devset(args.devset) if args.devset else None
    started = time.perf_counter()
    summary = generate_memory(args.out_dir, parts=args.parts, lines_per_part=args.lines_per_part, days=args.days, seed=args.seed, facts=facts)
    summary.pop("placements")
    summary["seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
