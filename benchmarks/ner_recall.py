"""Recall, precision and throughput of the named-entity step for free text (``lake.deid.ner``).

Synthetic radiology-report sentences with person names of several origins (written as reports
write them: ASCII transliterations, accents, all capitals, ``LAST^FIRST``, initials, katakana
readings) and research sentences without any name. A name word counts as found when the step
replaces it; a removed word that is not part of a name is a false positive. The name lists are a
hand-made set (not the step's own gazetteer), so recall also counts names the gazetteer lacks.
Prints the numbers per origin and in total; asserts nothing. Needs ``pip install "lake[ner]"``.

    python benchmarks/ner_recall.py [--sentences N] [--seed S]
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time

from lake.deid.ner import finder

#: (first names, last names) per origin, as Western-script reports write them
NAMES: dict[str, tuple[list[str], list[str]]] = {
    "English": (
        ["Margaret", "Oliver", "Charlotte", "Harry", "Emily", "George", "Jessica", "Thomas", "Hannah", "Daniel"],
        [
            "Thompson",
            "Bennett",
            "Whitfield",
            "Harrington",
            "Pemberton",
            "Ashworth",
            "Caldwell",
            "Fletcher",
            "Holloway",
            "Redford",
        ],
    ),
    "German": (
        ["Jürgen", "Sabine", "Wolfgang", "Ursula", "Dieter", "Birgit", "Matthias", "Heike", "Stefan", "Katrin"],
        [
            "Hoffmann",
            "Krüger",
            "Schneider",
            "Weißmann",
            "Bauer",
            "Schröder",
            "Neumann",
            "Zimmermann",
            "Hartmann",
            "Lehmann",
        ],
    ),
    "French": (
        ["Amélie", "Thierry", "Céline", "François", "Sylvie", "Benoît", "Chantal", "Gérard", "Maëlle", "Yannick"],
        [
            "Dubois",
            "Lefèvre",
            "Moreau",
            "Girard",
            "Fournier",
            "Rousseau",
            "Chevalier",
            "Gauthier",
            "Mercier",
            "Lambert",
        ],
    ),
    "Spanish/Portuguese": (
        ["Lucía", "Javier", "Carmen", "Alejandro", "Pilar", "Gonzalo", "Rocío", "João", "Conceição", "Thiago"],
        [
            "Fernández",
            "Morales",
            "Gutiérrez",
            "Navarro",
            "Delgado",
            "Castillo",
            "Ortega",
            "Gonçalves",
            "Magalhães",
            "Rodrigues",
        ],
    ),
    "Italian": (
        [
            "Giulia",
            "Lorenzo",
            "Francesca",
            "Alessandro",
            "Chiara",
            "Matteo",
            "Federica",
            "Giuseppe",
            "Valentina",
            "Davide",
        ],
        ["Romano", "Esposito", "Colombo", "Ricci", "Marino", "Greco", "Bruno", "Gallo", "Conti", "Mancini"],
    ),
    "Polish/Czech/Russian": (
        ["Agnieszka", "Krzysztof", "Małgorzata", "Wojciech", "Jiří", "Olga", "Dmitri", "Svetlana", "Tomasz", "Zuzana"],
        [
            "Nowak",
            "Wiśniewski",
            "Kowalczyk",
            "Wójcik",
            "Dvořák",
            "Ivanova",
            "Smirnov",
            "Kuznetsova",
            "Novotný",
            "Zieliński",
        ],
    ),
    "Turkish/Greek": (
        ["Mehmet", "Ayşe", "Mustafa", "Elif", "Emre", "Dimitrios", "Eleni", "Konstantinos", "Georgia", "Nikolaos"],
        [
            "Yılmaz",
            "Kaya",
            "Demir",
            "Şahin",
            "Öztürk",
            "Papadopoulos",
            "Nikolaidis",
            "Georgiou",
            "Karagiannis",
            "Vlachos",
        ],
    ),
    "Arabic/Persian": (
        ["Fatima", "Youssef", "Ahmed", "Layla", "Omar", "Khadija", "Hassan", "Zahra", "Reza", "Mariam"],
        ["Haddad", "Mansour", "Al-Rashid", "Nasser", "Khalil", "Hosseini", "Rahimi", "Abdullah", "Saleh", "Karimi"],
    ),
    "South Asian": (
        ["Priya", "Rajesh", "Anjali", "Suresh", "Deepika", "Arjun", "Lakshmi", "Vikram", "Sunita", "Imran"],
        ["Sharma", "Iyer", "Patel", "Reddy", "Krishnan", "Chatterjee", "Banerjee", "Nair", "Choudhury", "Qureshi"],
    ),
    "East Asian": (
        ["Wei", "Xiaoming", "Hiroshi", "Yuki", "Minjun", "Jiwoo", "Haruto", "Mei", "Sakura", "Seojun"],
        ["Zhang", "Liu", "Tanaka", "Nakamura", "Kim", "Choi", "Watanabe", "Huang", "Takahashi", "Jeong"],
    ),
    "West African/Vietnamese": (
        ["Chinedu", "Ngozi", "Oluwaseun", "Kwame", "Abena", "Thanh", "Huong", "Minh", "Chidi", "Folake"],
        ["Okafor", "Adeyemi", "Mensah", "Boateng", "Nwosu", "Nguyen", "Tran", "Pham", "Okonkwo", "Asante"],
    ),
}
#: katakana readings (family name, given name), written with a space
KANA = [("ヤマダ", "タロウ"), ("サトウ", "ハナコ"), ("スズキ", "イチロウ"), ("タカハシ", "ユミ"), ("ｲﾄｳ", "ｹﾝｼﾞ")]

TEMPLATES = [
    "Discussed with the patient's daughter {name} by phone.",
    "Technologist: {name}. Contrast given without complication.",
    "Images reviewed with {name} from the referring team.",
    "{name} present during the examination as interpreter.",
    "Called {name} at home to report the findings.",
    "Prior CT chest reviewed; wife {name} informed.",
    "Patient accompanied by {name}.",
    "Results faxed to {name}, cardiology.",
    "SCAN PERFORMED BY {name}",
    "COMPARED WITH OUTSIDE STUDY PER {name}",
    "Mother {name} requested a copy of the images.",
    "Dr. {name} agrees with the impression.",
]
#: research sentences: nothing in them is a name (every removed word is a false positive)
RESEARCH = [
    "T1 AXIAL",
    "CHEST PA",
    "Lung",
    "Perfusion",
    "T2 FLAIR SAG",
    "AX T1 POST GAD",
    "CT HEAD W/O CONTRAST",
    "MR BRAIN WITH AND WITHOUT CONTRAST",
    "DWI ADC MAP",
    "Lung nodule follow up, 5 mm, stable.",
    "CT ABDOMEN PELVIS WITH IV CONTRAST",
    "Gadovist 7.5 mL IV",
    "Omnipaque 350 100 mL",
    "SIEMENS SKYRA 3T",
    "Philips Ingenia 1.5T",
    "GE Signa Premier",
    "Canon Aquilion ONE",
    "Biograph mCT",
    "Heparin lock flushed",
    "Propofol sedation",
    "FDG PET/CT whole body",
    "Lexiscan stress perfusion",
    "Left lower lobe consolidation",
    "Right upper quadrant ultrasound",
    "Mammography bilateral screening",
    "Liver lesion arterial phase enhancement",
    "No acute intracranial hemorrhage.",
    "Motion artifact present.",
    "Recon kernel B30f, slice 1 mm",
    "Bone window",
    "Soft tissue",
    "Mediastinal window",
    "Scout lateral",
    "Cardiac gated CTA coronary",
    "Prostate MRI PI-RADS 4",
    "Knee MRI PD FS coronal",
    "Cervical spine sagittal",
    "Pulmonary embolism protocol",
    "Renal stone protocol low dose",
    "Brain perfusion CBF CBV MTT",
    "Breast MRI dynamic subtraction",
    "Hip arthrogram",
    "Thyroid ultrasound",
    "Echo LV function normal",
    "Stroke protocol CTA head and neck",
    "Abdomen MRCP",
    "Pelvis MRI rectal staging",
    "Spine STIR sagittal",
    "Aorta dissection protocol",
    "Chest CT lung cancer screening",
    "Sinus CT coronal",
    "Orbit MRI",
    "Pediatric chest AP portable",
    "Swallow study barium",
    "Angiography femoral access",
    "Biopsy needle guidance",
    # eponyms are names, but of diseases and anatomy: research words to keep
    "Baker cyst in the popliteal fossa.",
    "Schmorl node at L2.",
    "Hill-Sachs lesion and Bankart lesion.",
    "Fluid in Morison pouch.",
    "Wilms tumor, left kidney.",
    "Chiari malformation type 1.",
    "Findings consistent with Crohn disease.",
    "Paget disease of the pelvis.",
    "Hodgkin lymphoma staging.",
    "Kerley B lines, cardiomegaly.",
    "Fleischner criteria: follow up in 12 months.",
    "Bosniak IIF cyst.",
    "Couinaud segment 7 lesion.",
    "Circle of Willis patent.",
    "Sylvian fissure widening.",
    "Meckel diverticulum suspected.",
    "Zenker diverticulum.",
    "Barrett esophagus surveillance.",
    "Alzheimer disease protocol, amyloid PET.",
    "Parkinson DaTscan.",
    "Virchow node enlarged.",
    "Hounsfield units 20.",
    "Glasgow coma scale 15.",
    "Seldinger technique, 5 French sheath.",
    "Heart size normal. Mediastinum unremarkable.",
    "Mild degenerative change. No fracture.",
    "Comparison: prior MRI of March 2019.",
    "Impression: stable small pulmonary nodules.",
    "Severe stenosis at C5-C6 with cord compression.",
    "Normal appearance of the liver, spleen and pancreas.",
]


def _spell(first: str, last: str, rng: random.Random) -> tuple[str, list[str]]:
    """One written form of a name and the words that must disappear."""
    form = rng.randrange(6)
    if form == 0:
        return f"{first} {last}", [first, last]
    if form == 1:
        return f"{last}, {first}", [first, last]
    if form == 2:
        return f"{first[0]}. {last}", [last]
    if form == 3:
        return f"{first} {last}".upper(), [first.upper(), last.upper()]
    if form == 4:
        return f"{last}^{first}".upper(), [first.upper(), last.upper()]
    return last, [last]


def _words(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(r"[^\W\d_]+(?:-[^\W\d_]+)*", text)]


def _removed(original: str, cleaned: str) -> set[str]:
    """The words of ``original`` that ``cleaned`` no longer has (cleaning only puts ``*`` for spans)."""
    kept = set(re.findall(r"[^\W\d_]+(?:-[^\W\d_]+)*", cleaned))
    return {original[s:e] for s, e in _words(original)} - kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=40, help="sentences per origin (default 40)")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--verbose", action="store_true", help="print each false positive")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    step = finder()
    if step is None:
        print('the named-entity step is not installed: pip install "lake[ner]"', file=sys.stderr)
        return 2
    print(f"loaded in {time.perf_counter() - t0:.2f} s (cached name lists)")
    rng = random.Random(args.seed)
    texts: list[str] = []
    total_found = total_names = total_fp = total_removed = 0
    print(f"{'origin':26} {'recall':>7} {'names':>6} {'false pos.':>10}")
    origins = {**{k: v for k, v in NAMES.items()}, "Japanese katakana": ([], [])}
    for origin, (firsts, lasts) in origins.items():
        found = names = fp = removed = 0
        for _ in range(args.sentences):
            if origin == "Japanese katakana":
                family, given = rng.choice(KANA)
                name, words = f"{family} {given}", [family, given]
            else:
                name, words = _spell(rng.choice(firsts), rng.choice(lasts), rng)
            text = rng.choice(TEMPLATES).format(name=name)
            texts.append(text)
            cleaned, _hit = step.redact(text)
            gone = _removed(text, cleaned)
            name_words = {p for w in words for p in re.findall(r"[^\W\d_]+", w)}
            names += len(name_words)
            found += len(name_words & {p for g in gone for p in re.findall(r"[^\W\d_]+", g)})
            # an initial (a capital letter before a removed name) is part of the name
            extra = {g for g in gone if not set(re.findall(r"[^\W\d_]+", g)) & name_words and len(g) > 1}
            fp += len(extra)
            if extra and args.verbose:
                print(f"  removed {sorted(extra)} in {text!r}")
            removed += len(gone)
        total_found, total_names, total_fp, total_removed = (
            total_found + found,
            total_names + names,
            total_fp + fp,
            total_removed + removed,
        )
        print(f"{origin:26} {found / names:7.1%} {names:6} {fp:10}")
    research_fp = 0
    research_words = 0
    for text in RESEARCH:
        texts.append(text)
        cleaned, _hit = step.redact(text)
        research_words += len(_words(text))
        gone = _removed(text, cleaned)
        research_fp += len(gone)
        if gone:
            print(f"  research words removed: {sorted(gone)} in {text!r}")
    precision = (total_removed - total_fp) / (total_removed + research_fp) if total_removed else 0.0
    print(f"{'total':26} {total_found / total_names:7.1%} {total_names:6} {total_fp:10}")
    print(f"research sentences: {len(RESEARCH)}, words {research_words}, removed {research_fp}")
    print(f"precision (removed words that were names): {precision:.1%}")
    reps = max(1, 20000 // len(texts))
    t0 = time.perf_counter()
    for _ in range(reps):
        for text in texts:
            step.redact(text)
    seconds = time.perf_counter() - t0
    print(f"throughput: {reps * len(texts) / seconds:,.0f} texts/s ({seconds / (reps * len(texts)) * 1e6:.0f} µs each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
