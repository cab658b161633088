"""Every model on every validation set, side by side (the README's model table); prints Markdown.

    .venv/bin/python benchmarks/eval_models.py --data-root DATA [--model NAME_OR_ONNX ...] [--contrast none equalize] [--json out.json]

DATA holds the unzipped datasets of ../shared/datasets: ``fer2013/`` (its validation split is
scored against the original labels and, with ``ferplus-votes.csv``, against the FER+ vote
plurality), ``affectnet-yolo/`` (valid) and ``muxspace-dev/`` (in-the-wild photos, scored as an
evaluation folder twice: the crops as given, and end to end, each face found by the default
detector and cut by the model's crop spec as ``emolens analyze`` does; a photo without a face
found counts as wrong). Each cell is what ``emolens evaluate`` reports for that pair. Last, for each
model, the temperature (as a factor on its own) that minimises its largest ECE over the sets.
``--contrast`` re-scores each model with its crop spec's contrast normalisation switched (a copy
of the ONNX file with edited metadata), to measure what equalising the input does.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import onnx

from emolens.evaluation.evaluate import evaluate_model
from emolens.inference.classifier import resolve_model

REPO = Path(__file__).resolve().parents[1]
VOTES = Path(os.environ.get("EMOLENS_SHARED", REPO.parent / "shared")) / "datasets" / "ferplus-votes.csv"
SETS = {  # name: (folder under the data root, split, format, detect)
    "fer2013": ("fer2013", "val", "auto", False),
    "affectnet": ("affectnet-yolo", "val", "auto", False),
    "muxspace-dev": ("muxspace-dev", "eval", "eval-folder", False),
    "muxspace-dev-detected": ("muxspace-dev", "eval", "eval-folder", True),
}


def with_contrast(model: str, contrast: str, folder: Path) -> Path:
    """A copy of ``model``'s ONNX file whose crop spec asks for ``contrast``."""
    proto = onnx.load(str(resolve_model(model)))
    for prop in proto.metadata_props:
        if prop.key == "emolens":
            meta = json.loads(prop.value)
            meta["crop"]["contrast"] = contrast
            prop.value = json.dumps(meta)
    out = folder / f"{Path(model).stem}-{contrast}.onnx"
    onnx.save(proto, str(out))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--model", nargs="+", default=["default", "fer2013", "affectnet8", "fer2013-fast"])
    parser.add_argument("--contrast", nargs="*", default=[], help="also score each model with these contrasts")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        variants = [(m, m, "as shipped") for m in args.model]
        variants += [(m, str(with_contrast(m, c, Path(tmp))), f"contrast={c}") for m in args.model for c in args.contrast]
        for name, ref, how in variants:
            row = results.setdefault(f"{name} ({how})", {})
            for set_name, (folder, split, fmt, detect) in SETS.items():
                data = args.data_root / folder
                if not data.exists():
                    continue
                votes = VOTES if set_name == "fer2013" and VOTES.exists() else None
                r = evaluate_model(ref, data, Path(tmp) / "report", split=split, format=fmt, votes=votes, detect=detect,
                                   log=lambda _m: None)
                row[set_name] = {k: r[k] for k in ("accuracy", "macro_f1", "ece", "n")}
                row[set_name]["temperature_fit"] = r["temperature_fit"]["temperature"]
                row[set_name]["ece_by_temperature"] = r["temperature_fit"]["ece_by_temperature"]
                if votes is not None:
                    row["ferplus"] = {"accuracy": r["votes_accuracy"], "n": r["votes_n"]}
    names = ["fer2013", "ferplus", "affectnet", "muxspace-dev", "muxspace-dev-detected"]
    print("| model | " + " | ".join(f"{n} acc / macro-F1 / ECE" for n in names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for model, row in results.items():
        cells = []
        for n in names:
            r = row.get(n)
            if r is None:
                cells.append("-")
            elif "macro_f1" in r:
                cells.append(f"{r['accuracy']:.1%} / {r['macro_f1']:.1%} / {r['ece']:.1%}")
            else:
                cells.append(f"{r['accuracy']:.1%}")
        print(f"| {model} | " + " | ".join(cells) + " |")
    print()
    for model, row in results.items():
        print(f"{model}: {common_temperature(row)}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def common_temperature(row: dict[str, dict]) -> str:
    """The temperature (relative to the model's own) that minimises the largest ECE over the sets
    scored, since one temperature serves them all; with each set's ECE there."""
    grids = {n: r["ece_by_temperature"] for n, r in row.items() if "ece_by_temperature" in r}
    if not grids:
        return "no calibration grid"
    best = min(next(iter(grids.values())), key=lambda t: max(g[t] for g in grids.values()))
    return f"temperature × {best} → ECE " + ", ".join(f"{n} {g[best]:.1%}" for n, g in grids.items())


if __name__ == "__main__":
    main()
