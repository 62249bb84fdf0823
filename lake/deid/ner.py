"""Person names in free text that the header names nowhere else (issue 12, leak path 6).

A comment reads "discussed with the patient's daughter Maria Kowalska" or "tech: J. Okafor"; the
file's own identifiers (:mod:`lake.deid.clean`) know neither person. Under Clean Descriptors, the
text the profile cleans (ST, LT, UT, UC and the cleaned descriptors: ImageComments,
StudyDescription, SR TextValue...) therefore also goes through :class:`NameFinder`, which finds
person names by three rules and replaces each with ``*``:

1. **Gazetteer**: a word that is a ranked first or last name of the ``names-dataset`` package
   (from 105 countries: Latin, Cyrillic, Greek, Arabic, Hebrew, CJK, Hangul... scripts; folded as
   :func:`lake.deid.names.fold` does) and no research word. Research words are the DICOM data
   dictionary's and the DICOM/SNOMED concept meanings' words (pydicom ships both), the lake's common
   DICOM tokens, and the short lists below (English function words, vendors, devices, contrast
   agents and drugs): ``T1 AXIAL``, ``CHEST PA``, ``Lung``, ``Perfusion``, ``Gadovist``, ``Siemens
   Skyra`` survive although ``Lung``, ``Chest`` or ``Siemens`` are also someone's name. In text with
   lower-case letters only a capitalised word counts.
2. **Context**: the capitalised words after an honorific or a role or kinship word (``Dr``,
   ``Mrs``, ``technologist``, ``daughter``, ``signed by``...) are a name whatever they are; a name
   word's neighbours that are also names (``Grace Lung``) and initials (``J.``) go with it.
3. **Kana readings**: two katakana words (full- or half-width) separated by a space, ``^``, ``・``
   or an ideographic space (``ヤマダ タロウ``), or kana or kanji followed by a Japanese honorific
   (``様``, ``さん``, ``氏``, ``先生``).

Why this and not the alternatives (checked 2026-12 against what pip installs here, with no model
download at run time): Presidio's analyzer finds names only through a spaCy model, and the
official English spaCy models are not on PyPI (only third-party re-uploads, which a PHI tool must
not trust); its deny-list recogniser is a regex over a list, which this module is, with a better
list. ``philter-lite`` (UCSF's philter) tags parts of speech with NLTK's perceptron model, which
NLTK downloads at run time, and keeps only words on its safe list, which loses the research
vocabulary. ``ja-ginza`` is Japanese only and brings a 70 MB dictionary and seconds of load per
worker; the kana rule covers the readings. GLiNER, flair and stanza load their models from hubs.
``names-dataset`` is a 56 MB wheel of name lists with per-country ranks; ``benchmarks/ner_recall.py``
measures recall, precision and throughput on synthetic reports.

Cost (``benchmarks/ner_recall.py``, 2026-12-02): the lists are derived once per machine from the
package's pickles (30-40 s, about 1 GB at peak, one process at a time under a lock) into a 1.3 MB
cache file (``LAKE_NER_CACHE``, default ``$XDG_CACHE_HOME/lake`` or ``~/.cache/lake``), which a
process then reads in 0.7-1.0 s (about 85 MB); ingest reads it in the parent before forking its
workers, which share it. Scanning is a regex pass and set look-ups: about 50 µs per text, 24 µs
per file on the de-identification corpus (1% of the engine's time). On the benchmark's synthetic
reports (11 origins, six spellings, katakana readings, 86 research sentences with eponyms) recall
is 99.8% and precision 99.9%.

Without the package (or with ``LAKE_NER=off``), :func:`finder` returns None and the engine removes
the free text it would have scanned (reason ``removed_free_text_no_ner``): a text that may hold a
name nobody can find is not kept.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from lake.deid.names import COMMON_TOKENS, fold

logger = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "lake[ner]"'
#: what the console and the run report say once when free text was removed for want of the step
NOT_INSTALLED = (
    "the named-entity step for free text is not installed, so under clean_descriptors the free text "
    f"it would scan was removed (reason removed_free_text_no_ner); install it with {INSTALL_HINT}"
)
#: the engine's reason for text removed without the step, and the ingest summary's code for such files
NO_NER_REASON = "removed_free_text_no_ner"
NO_NER_WARNING = "deid:free_text_removed_no_ner"
#: ``LAKE_NER=off`` disables the step (as if not installed: the fallback removes the text)
ENV_SWITCH = "LAKE_NER"
ENV_CACHE = "LAKE_NER_CACHE"
#: a name is in the gazetteer when its best rank in some country is at most this
MAX_RANK = 5000
_BUILD = 3  # bump when the derivation below changes (the cache file's name carries it)

#: English function and report words: never a name, not even after ``Dr`` or ``daughter``
_FUNCTION = """
    a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does done down during each either else even ever every
    few for from further had has have having he her here hers him his how however if in into is it its
    just last least less like made make many me might more most much must my near neither never
    new next no nor not now of off often on once one only or other our out over own per perhaps please
    prior same see seen she should since so some still such than that the their them then there these
    they this those though through thus to too under until up upon us very via was we well were what
    when where whether which while who whom whose why with within without would yet you your
    today tomorrow yesterday morning evening night week month year day days hour hours minute minutes
    monday tuesday wednesday thursday friday saturday sunday january february march april june july
    august september october november december jan feb mar apr jun jul aug sep sept oct nov dec
    said says told asked called noted stable poor due patient patients family son daughter wife
    husband mother father brother sister friend doctor nurse tech staff reader reading signed
    reviewed dictated approved verified performed requested referred ordered compared impression
    findings history indication technique comparison conclusion recommendation report addendum note
    notes comment comments protocol sequence series study studies exam image images scan scans view
    views phase phases contrast dose doses mean median total rate ratio volume yes ok okay pre post
    non re mid sub trans inter intra para peri supra infra phone tel fax email
"""
#: English words that are also common names (``Will``, ``May``, ``Mark``, ``Smith``): a name only
#: after a cue or beside another name word
_ENGLISH_NAMES = """
    will may mark case rose grace hope faith joy june summer winter autumn spring dawn amber ruby
    pearl crystal iris daisy lily holly ivy olive sky star bill frank art bob sue sam max ray gene
    dean chase hunter wade lane bay long king young white black brown green gray grey rich price hall
    wall page bell stone wood moss field fields marsh ford cross park street road way mill rice cook
    baker miller smith tailor mason carter fisher walker taylor shepherd turner parker porter cooper
    glass stark good best little small large big tall short fine fair bright clear free sharp strong
    swift
"""
#: device, vendor and product names, contrast agents, tracers and common drugs (research words)
_RESEARCH = """
    siemens philips canon toshiba hitachi fujifilm fuji agfa kodak carestream hologic varian elekta
    accuray mindray samsung esaote konica minolta shimadzu planmeca sirona vatech bracco bayer guerbet
    medrad stryker medtronic brainlab neusoft united imaging healthineers ge gehc ziehm orthoscan
    magnetom skyra prisma trio verio avanto aera vida sola espree symphony sonata harmony essenza
    somatom definition force drive flash edge biograph emotion sensation perspective spectra
    ingenia achieva intera panorama brilliance ict iqon incisive vereos gemini discovery signa optima
    revolution lightspeed brightspeed hispeed excite genesis premier pioneer architect aquilion vantage
    titan galan orian echelon senographe pristina selenia dimensions mammomat revelation artis allura
    azurion innova optiva voluson logiq vivid epiq affiniti acuson sequoia juniper aplio xario
    truebeam clinac halcyon ethos versa synergy infinity cyberknife tomotherapy leksell gamma knife
    ultravist omnipaque visipaque isovue optiray iomeron xenetix hexabrix conray cysto telebrix
    iohexol iodixanol iopamidol iopromide ioversol iomeprol iobitridol ioflupane gadolinium gadobutrol
    gadoterate gadoteridol gadobenate gadoxetate gadodiamide gadopentetate gadopiclenol gadavist
    gadovist dotarem clariscan prohance multihance eovist primovist magnevist omniscan elucirem vueway
    feraheme ferumoxytol definity optison lumason sonovue sulfur hexafluoride perflutren
    fluorodeoxyglucose fdg psma pylarify locametz illuccix axumin fluciclovine amyvid vizamyl neuraceq
    tauvid florbetapir florbetaben flutemetamol flortaucipir datscan octreoscan netspot detectnet
    technetium sestamibi cardiolite myoview tetrofosmin thallium gallium indium xenon iodine rubidium
    ammonia choline dotatate dotatoc fluoride sodium potassium lutathera pluvicto xofigo radium
    heparin warfarin aspirin clopidogrel apixaban rivaroxaban dabigatran enoxaparin metformin insulin
    saline propofol midazolam fentanyl lorazepam diazepam glucagon buscopan hyoscine butylscopolamine
    adenosine regadenoson lexiscan dipyridamole dobutamine atropine furosemide lasix nitroglycerin
    metoprolol esmolol ivabradine lidocaine ketamine morphine paracetamol acetaminophen ibuprofen
    dexamethasone prednisone prednisolone hydrocortisone methylprednisolone tamoxifen letrozole
    anastrozole cisplatin carboplatin paclitaxel docetaxel doxorubicin cyclophosphamide methotrexate
    rituximab trastuzumab bevacizumab pembrolizumab nivolumab ipilimumab temozolomide levetiracetam
    amoxicillin ceftriaxone vancomycin gentamicin ciprofloxacin metronidazole barium gastrografin
    t1 t2 pd mprage flair dwi adc swi tof dti bold asl dce dsc vibe haste space cube bravo lava
    axial sagittal coronal oblique localizer scout survey topogram helical spiral
    sag cor ax axi tra tran obl lat ap pa fs fatsat sat wo std thin thick recon mip minip mpr vol iso
    dyn del art ven port pv equil loc tse fse gre se ir epi dwi hr hd lo hi med min max avg sup inf
    ant post med rt lt bil bilat ext int prox dist cran caud cx abd pel thor lum cerv thx ext sr kub
    cta ctp mra mrv mrcp mrs pet spect dexa dxa mammo tomo dbt us echo doppler fluoro angio cath kv
    kvp mas ma mm cm ms hz cc ml mg kg iv po sc im bpm hu suv cbf cbv mtt ttp tmax roi voi fov
"""
_HONORIFICS = "dr dra mr mrs ms miss mx prof sir madam herr frau sr sra srta mme mlle dott dottssa"
_ROLES = """
    technologist technologists technician tech radiographer sonographer nurse physician doctor resident fellow
    attending referring radiologist consultant registrar surgeon anesthetist anaesthetist physicist
    wife husband son daughter mother father brother sister aunt uncle cousin niece nephew grandson
    granddaughter grandmother grandfather guardian partner spouse relative neighbour neighbor friend
    caregiver carer interpreter translator witness contact informant
"""
#: words before a name that are also used otherwise ("read by Radiology"): only a name word follows
_WEAK_CUES = "by per cc attn signed dictated verified read reviewed approved called paged informed notified"
#: nouns an eponym names (``Baker cyst``, ``Hill-Sachs lesion``, ``Crohn's disease``, ``Glasgow coma scale``):
#: a name word a word or two before one of these is a disease's or a structure's name, not a person's
_EPONYM_NOUNS = """
    disease syndrome tumor tumour malformation lesion fissure diverticulum node cyst pouch sign
    fracture classification criteria scale score canal duct foramen triangle ring procedure maneuver
    manoeuvre reflex palsy anomaly deformity lymphoma sarcoma hernia ulcer aneurysm phenomenon circle
    bursa sulcus gyrus nucleus tubercle fascia ligament gland capsule coma lines
"""
#: ... and nouns before ``of`` and an eponym (``circle of Willis``, ``pouch of Douglas``, ``loop of Henle``)
_EPONYM_OF = (
    "circle pouch foramen sphincter ligament loop islets tetralogy space organ canal ampulla angle duct triangle"
)
#: katakana loanwords of imaging (``ヘリカル スキャン`` is a helical scan, not a name reading)
_KANA_LOANWORDS = """
    ヘリカル スキャン コントラスト ダイナミック スタディ シリーズ プロトコル スライス アキシャル サジタル
    コロナル ルーチン テスト ファントム ボリューム レンダリング フィルム モード シーケンス パーフュージョン
    マンモグラフィ マンモグラフィー エコー ドップラー カテーテル ステント ガイドワイヤー ヨード ガドリニウム
    オムニパーク イオパミロン ビジパーク プリモビスト マグネビスト ガドビスト プロハンス オムニスキャン
    スカウト ローカライザー サーベイ ボーラス トラッキング リコン カーネル ウィンドウ レベル マトリクス
    フィールド ダイナミクス ディフュージョン フレア エピ スピン グラジエント エコープラナー インバージョン
    リカバリー ファット サット サチュレーション シム キャリブレーション ポスト プレ コイル ヘッド ボディ
    ネック チェスト アブドメン ペルビス スパイン ニー ショルダー ハート カーディアック ブレイン ライト
    レフト ノーマル フォロー アップ ポータブル ルーチン オブリーク ソフト ボーン ラング リバー
"""
_KANA_WORDS = frozenset(_KANA_LOANWORDS.split())
_CUES = frozenset(fold(w) for w in (_HONORIFICS + " " + _ROLES).split())
_EPONYM = frozenset(fold(w) for w in _EPONYM_NOUNS.split())
_EPONYM_BEFORE_OF = frozenset(fold(w) for w in _EPONYM_OF.split())
_WEAK = frozenset(fold(w) for w in _WEAK_CUES.split())
_HONORIFIC_CUES = frozenset(fold(w) for w in _HONORIFICS.split())

#: a word: letters not glued to digits ("T1", "3T" and "MRN448100" are not words)
_WORD = re.compile(r"(?<!\d)[^\W\d_]+(?:['’][^\W\d_]+)?(?!\d)")
_KATAKANA = r"[\u30A1-\u30FA\u30FC\u31F0-\u31FF\uFF66-\uFF9F]"
_KANA_READING = re.compile(rf"{_KATAKANA}{{2,}}(?:[ \u3000^・･]+{_KATAKANA}{{2,}})+")
_JA_HONORIFIC = re.compile(
    r"[\u3041-\u3096\u30A1-\u30FA\u30FC\u4E00-\u9FFF\uFF66-\uFF9F]{1,8}(?=[ \u3000]?(?:様|さん|氏|君|ちゃん|先生|殿))"
)
#: what may stand between two words of one name: spaces, ^, a comma, a hyphen, an initial's dot
_JOIN = re.compile(r"[\s^,.\-]{1,3}")
_EPONYM_GAP = re.compile(r"[ -]")
_CUE_GAP = re.compile(r"[\s^,.:\-]{1,3}")


def _kana_name(reading: str) -> bool:
    """Katakana words that read as a name: none of them an imaging loanword (half-width folded)."""
    words = re.split(r"[ \u3000^・･]+", unicodedata.normalize("NFKC", reading))
    return not any(w in _KANA_WORDS for w in words)


def _key(word: str) -> str:
    """A word as the gazetteer holds it: folded, without a possessive ``'s``."""
    key = fold(word).replace("’", "'")
    return key[:-2] if key.endswith("'S") else key


@dataclass(frozen=True)
class Gazetteer:
    """Folded name words: ``names`` are names only, ``ambiguous`` are also research or English words."""

    names: frozenset[str]
    ambiguous: frozenset[str]


class NameFinder:
    """Finds person names in text (see the module docstring for the rules)."""

    def __init__(self, gazetteer: Gazetteer) -> None:
        self._names = gazetteer.names
        self._ambiguous = gazetteer.ambiguous
        self._function = frozenset(fold(w) for w in _FUNCTION.split())
        self._english_names = frozenset(fold(w) for w in _ENGLISH_NAMES.split())
        self._research = _research_words()

    def spans(self, text: str) -> list[tuple[int, int]]:
        """(start, end) of each person name in ``text``."""
        spans: list[tuple[int, int]] = [m.span() for m in _KANA_READING.finditer(text) if _kana_name(m.group())]
        spans += [m.span() for m in _JA_HONORIFIC.finditer(text)]
        words = [(m.start(), m.end(), m.group()) for m in _WORD.finditer(text)]
        if not words:
            return spans
        cased = any(c.islower() for c in text)  # all-capitals text: capitals say nothing
        keys = [_key(w) for _s, _e, w in words]
        plausible = [not cased or not w[0].islower() for _s, _e, w in words]
        name = [False] * len(words)
        eponym = [
            any(
                keys[j] in _EPONYM and _EPONYM_GAP.fullmatch(text[words[j - 1][1] : words[j][0]])
                for j in range(i + 1, min(i + 3, len(words)))
            )
            or (i > 1 and keys[i - 1] == "OF" and keys[i - 2] in _EPONYM_BEFORE_OF)
            for i in range(len(words))
        ]
        for i, key in enumerate(keys):
            if plausible[i] and not eponym[i] and len(key) >= (3 if cased else 4) and key in self._names:
                name[i] = True
        for i in range(1, len(words)):  # after an honorific or a role word: a name, whatever it is
            cue = keys[i - 1]
            if not (cue in _CUES or cue in _WEAK) or not plausible[i] or keys[i] in self._function:
                continue
            if not _CUE_GAP.fullmatch(text[words[i - 1][1] : words[i][0]]):
                continue
            if cue in _WEAK or not cased:  # "MR BRAIN", "DR CHEST": capitals say nothing
                name[i] = name[i] or keys[i] in self._english_names
            elif not cased or words[i][2][0].isupper() or cue in _HONORIFIC_CUES:
                name[i] = True
        changed = True
        while changed:  # neighbours: more name words, initials, the words after a cue's first name
            changed = False
            for i in range(len(words)):
                if name[i] or not plausible[i] or eponym[i]:
                    continue
                left = i > 0 and name[i - 1] and self._joined(text, words, i - 1)
                right = i + 1 < len(words) and name[i + 1] and self._joined(text, words, i)
                if not (left or right):
                    continue
                key = keys[i]
                if key in self._function or key in _CUES:
                    continue
                # an initial before a name ("J. Okafor"), or after one without a full stop ("OKAFOR J")
                initial = (
                    len(key) == 1
                    and words[i][2].isupper()
                    and (right or "." not in text[words[i - 1][1] : words[i][0]])
                )
                # "Maria Kowalska", "with Minjun Zhang": a capitalised word beside a name, not starting a sentence
                unknown_capitalised = key not in self._research and (
                    cased and words[i][2][0].isupper() and (left or (i > 0 and words[i - 1][2][0].islower()))
                )
                if initial or key in self._names or key in self._ambiguous or unknown_capitalised:
                    name[i] = changed = True
        spans += [(s, e) for (s, e, _w), hit in zip(words, name, strict=True) if hit]
        return spans

    @staticmethod
    def _joined(text: str, words: list[tuple[int, int, str]], i: int) -> bool:
        """Word ``i`` and word ``i + 1`` are written as parts of one name (only a short separator between)."""
        if i + 1 >= len(words):
            return False
        gap = text[words[i][1] : words[i + 1][0]]
        return bool(_JOIN.fullmatch(gap))

    def redact(self, text: str) -> tuple[str, bool]:
        """``text`` with each name replaced by ``*``, and whether one was found."""
        from lake.deid.clean import redact

        spans = self.spans(text)
        return (redact(text, spans), True) if spans else (text, False)


def available() -> bool:
    """The step can run: ``names-dataset`` is installed and ``LAKE_NER`` is not ``off``."""
    if os.environ.get(ENV_SWITCH, "").strip().lower() in ("off", "0", "no", "false"):
        return False
    return importlib.util.find_spec("names_dataset") is not None


def finder() -> NameFinder | None:
    """The process's name finder, or None when the step is not installed (or switched off)."""
    if not available():
        return None
    return _finder()


def warm(options: Iterable[str]) -> None:
    """Load the step now when the lake's options clean descriptors (before forking ingest workers,
    which then share the loaded lists instead of each reading them)."""
    if "clean_descriptors" in options:
        finder()


@lru_cache(maxsize=1)
def _finder() -> NameFinder:
    return NameFinder(load_gazetteer())


@lru_cache(maxsize=1)
def _research_words() -> frozenset[str]:
    return frozenset(fold(w) for w in (_FUNCTION + _ENGLISH_NAMES + _RESEARCH).split()) | COMMON_TOKENS


def cache_dir() -> Path:
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lake"


def _cache_file() -> Path:
    versions = "|".join(
        [str(_BUILD), str(MAX_RANK), importlib.metadata.version("names-dataset"), importlib.metadata.version("pydicom")]
    )
    digest = hashlib.sha256((versions + _FUNCTION + _ENGLISH_NAMES + _RESEARCH).encode()).hexdigest()[:16]
    return cache_dir() / f"ner-names-{digest}.txt.gz"


def load_gazetteer() -> Gazetteer:
    """The cached gazetteer, built first if this machine has none (one process builds, others wait)."""
    path = _cache_file()
    if not path.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path.with_suffix(".lock"), "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if not path.exists():
                    logger.info("building the name gazetteer cache (once per machine)")
                    _write(path, build_gazetteer())
        except OSError:  # a read-only home: built in memory by each process (slow, still correct)
            logger.warning("the name gazetteer cache folder is not writable; set %s to a writable folder", ENV_CACHE)
            return build_gazetteer()
    with gzip.open(path, "rt", encoding="utf-8") as f:
        names: set[str] = set()
        ambiguous: set[str] = set()
        for line in f:
            kind, word = line[0], line[2:].rstrip("\n")
            (names if kind == "n" else ambiguous).add(word)
    return Gazetteer(frozenset(names), frozenset(ambiguous))


def _write(path: Path, gazetteer: Gazetteer) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as f:
        for kind, words in (("n", gazetteer.names), ("a", gazetteer.ambiguous)):
            f.writelines(f"{kind} {w}\n" for w in sorted(words))
    os.replace(tmp, path)


def build_gazetteer(max_rank: int = MAX_RANK) -> Gazetteer:
    """Ranked single-word first and last names of ``names-dataset``, split by the research vocabulary."""
    from names_dataset import NameDataset

    found: set[str] = set()
    for first in (True, False):  # one list at a time: each pickle takes about 1 GB once loaded
        data = NameDataset(load_first_names=first, load_last_names=not first)
        table = data.first_names if first else data.last_names
        assert table is not None
        found.update(_ranked(table, max_rank))
        del data, table
    research = _vocabulary()
    ambiguous = {w for w in found if w in research}
    return Gazetteer(frozenset(found - ambiguous), frozenset(ambiguous))


def _ranked(table: dict[str, dict[str, dict[str, float]]], max_rank: int) -> Iterable[str]:
    for name, facts in table.items():
        ranks = facts.get("rank") or {}
        if ranks and min(ranks.values()) <= max_rank and " " not in name.strip():
            key = fold(name.strip()).replace("’", "'")
            if len(key) >= 2:
                yield key


def _vocabulary() -> frozenset[str]:
    """Research words: the DICOM dictionary's and concept meanings' words, and this module's lists."""
    from pydicom.datadict import DicomDictionary
    from pydicom.sr._concepts_dict import concepts

    words: set[str] = set(_research_words())
    for entry in DicomDictionary.values():
        words.update(fold(w) for w in _WORD.findall(entry[2]))
    # Concept meanings are in sentence case ("Structure of lung", "Caldwell view"): a word written
    # capitalised only after a meaning's first word is a proper noun (an eponym, a place), not vocabulary.
    schemes: dict[str, dict[str, dict[str, tuple[str, list[int]]]]] = concepts  # type: ignore[assignment]
    for scheme in schemes.values():
        for codes in scheme.values():
            for meaning, _cids in codes.values():
                for i, w in enumerate(_WORD.findall(meaning)):
                    if not (i and w[0].isupper() and not w.isupper()):
                        words.add(fold(w))
    return frozenset(w for w in words if len(w) >= 2)
