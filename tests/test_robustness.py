"""Distribution shift: a trained instance's training condition is a parameter (``train_task``,
``train_set``; DnCNN-S's ``model_sigma``), it trains on that condition, the plan refuses one that
cannot apply, the shift is part of the cell's key and of the export, and the report's robustness
section pairs each shifted instance with its in-distribution twin."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

import reports
from benchmark.api import TrainingContext, TrainingReport
from benchmark.core.errors import UserError
from benchmark.problems import conditions, medical, tasks
from benchmark.results import robustness
from benchmark.results.export import long_results
from benchmark.results.store import ResultsStore
from benchmark.run import runner
from benchmark.run.plan import Cell, make_plan
from benchmark.run.pool import MethodPool
from benchmark.run.profiles import parse
from methods.dncnn import DnCNN
from methods.dps import DPS
from methods.ffdnet import FFDNet
from methods.unet import SupervisedUNet
from reports import robustness as robustness_report
from reports import synthetic, tables


def _profile(methods: list[str], task_names: list[str], **extra: Any) -> Any:
    doc = {"name": "shift", "description": "shift cells", "methods": methods, "tasks": task_names,
           "datasets": [{"name": "embedded", "resize": 64, "crop": 32, "limit": 1}], "seeds": [0],
           "budget": "test", "metrics_off": ["lpips"], "save_reconstructions": False,
           "training": {"dataset": "embedded", "crop": 32,
                        "spaces": {"ct": {"dataset": "ct_chest_train", "resize": 32}}},
           **extra}
    return parse(doc)


def _cell(cells: list[Cell], label: str, task: str) -> Cell:
    return next(c for c in cells if c.label == label and c.task == task)


def test_a_shift_cell_trains_on_the_train_tasks_physics_and_the_named_training_set(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []

    def spy(self: SupervisedUNet, ctx: TrainingContext) -> TrainingReport:
        seen.append((ctx.task.name, ctx.dataset))
        return TrainingReport(seconds=0.0, cached=True)

    monkeypatch.setattr(SupervisedUNet, "prepare", spy)
    cells, _ = make_plan(_profile(["unet", "unet[train_task=denoising_s25]", "unet[train_set=ct_chest_train]"],
                                  ["denoising_s50"]))
    pool = MethodPool(list, "embedded", tmp_path, torch.device("cpu"), progress=False,
                              load_training=lambda name: [])
    # the named set is prepared as the default one (the test images' scale): only the images change
    for label, expected in (("unet", ("denoising_s50", "embedded[crop=32,resize=64]")),
                            ("unet[train_task=denoising_s25]", ("denoising_s25", "embedded[crop=32,resize=64]")),
                            ("unet[train_set=ct_chest_train]", ("denoising_s50", "ct_chest_train[crop=32,resize=64]"))):
        seen.clear()
        pool.get(_cell(cells, label, "denoising_s50"), channels=1)
        assert seen == [expected], label


def test_the_plan_refuses_a_condition_that_cannot_apply() -> None:
    with pytest.raises(UserError, match="train_task 'mri_x4' has 'mri' images.*'unit'"):
        make_plan(_profile(["unet[train_task=mri_x4]"], ["denoising_s25"]))
    with pytest.raises(UserError, match="unknown task 'denoising_s99'"):
        make_plan(_profile(["unet[train_task=denoising_s99]"], ["denoising_s25"]))
    with pytest.raises(UserError, match="train_set 'ct_chest' is a test set; training sets: .*ct_chest_train"):
        make_plan(_profile(["unet[train_set=ct_chest]"], ["denoising_s25"]))
    with pytest.raises(UserError, match="train_set 'mri_brain_train' has 2-channel images and the test images have 1"):
        make_plan(_profile(["unet[train_set=mri_brain_train]"], ["denoising_s25"]))
    with pytest.raises(UserError, match="parameter 'train_task' must be a registered task's name"):
        make_plan(_profile(["unet[train_task=3]"], ["denoising_s25"]))


def test_the_condition_is_part_of_the_cell_key() -> None:
    cells, _ = make_plan(_profile(["unet", "unet[train_task=denoising_s25]", "unet[train_set=ct_chest_train]"],
                                  ["denoising_s50"]))
    keys = {c.label: c.key for c in cells}
    assert len(set(keys.values())) == 3
    shifted = _cell(cells, "unet[train_set=ct_chest_train]", "denoising_s50")
    assert shifted.training == "ct_chest_train[crop=32,resize=64]"
    assert _cell(cells, "unet", "denoising_s50").training == "embedded[crop=32,resize=64]"


def test_a_shift_is_described_from_the_declared_parameters() -> None:
    assert conditions.task_shift("denoising_s25", "denoising_s50") == "noise σ 25 → 50"
    assert conditions.task_shift("mri_x4", "mri_x8") == "acceleration 4× → 8×, centre fraction 0.08 → 0.04"
    assert conditions.task_shift("mri_x4", "mri_x4_equispaced") == "mask random → equispaced"
    assert conditions.task_shift("ct_views60", "ct_views30") == "views 60 → 30"
    assert conditions.task_shift("ct_views60", "ct_views60") == ""
    assert conditions.content_shift(conditions.content_of("embedded"), conditions.content_of("ct_chest")) == \
        "content natural → CT"
    assert conditions.describe("denoising_s25", "denoising_s50", "CT", "embedded") == \
        "noise σ 25 → 50; content CT → natural"
    assert conditions.describe("", "denoising_s50", "natural", "my_folder") == ""  # an undeclared kind: no claim


def test_equispaced_lines_sample_as_many_lines_as_the_random_mask_expects() -> None:
    for width in (64, 128, 256):
        mask = medical.equispaced_mask(width, 4, 0.08, torch.Generator().manual_seed(3))
        assert mask.sum().item() == pytest.approx(width / 4, abs=1)
        low = int(round(width * 0.08))
        pad = (width - low + 1) // 2
        assert mask[pad : pad + low].all()
        outside = torch.cat([mask[:pad], mask[pad + low :]]).nonzero().flatten()
        gaps = (outside[1:] - outside[:-1]).tolist()
        assert max(gaps) - min(gaps) <= 1 + low  # evenly spaced but for the centre band
    offsets = {int(medical.equispaced_mask(64, 4, 0.08, torch.Generator().manual_seed(s)).nonzero()[0])
               for s in range(20)}
    assert len(offsets) > 1  # the offset is drawn per measurement


def test_released_weights_declare_their_condition() -> None:
    s50, s25, inpainting = (tasks.get(n) for n in ("denoising_s50", "denoising_s25", "inpainting_random50"))
    assert DnCNN(model_sigma=25).train_task(s50) == "denoising_s25"
    assert DnCNN().train_task(s50) == "denoising_s50"
    assert DnCNN().train_task(inpainting) is None
    assert DnCNN.condition_parameters() == ("model_sigma",)
    assert FFDNet().train_task(s25) is None  # told σ: no noise level to shift
    assert FFDNet().released_content() == DnCNN().released_content() == "natural"
    assert DPS().released_content() == "" and DPS(pretrained="ffhq").released_content() == "natural"
    assert SupervisedUNet.condition_parameters() == ("train_task", "train_set")
    assert DPS.condition_parameters() == ("train_set",)  # its prior does not depend on the task


def test_the_shift_table_pairs_each_shifted_instance_with_its_twin() -> None:
    table = robustness.shift_table(synthetic.shift_frame())
    assert set(table["shift"]) == {"noise σ 25 → 50"}
    rows = table.set_index("method")
    assert rows.loc["unet[train_task=denoising_s25]", "twin"] == "unet"
    assert rows.loc["dncnn[model_sigma=25]", "twin"] == "dncnn"
    assert set(rows.index) == {"unet[train_task=denoising_s25]", "dncnn[model_sigma=25]", "dip", "tv"}
    shifted = rows.loc["unet[train_task=denoising_s25]"]
    assert shifted["drop_mean"] == pytest.approx(shifted["in_mean"] - shifted["shifted_mean"])
    assert 0 < shifted["drop_low"] < shifted["drop_mean"] < shifted["drop_high"]  # 5 dB lower on every image
    assert (rows.loc["dip", "in_mean"], rows.loc["dip", "drop_mean"]) == (rows.loc["dip", "shifted_mean"], 0.0)
    # the trained twins rank first in distribution, DIP and TV first once the condition moves
    assert {m: (r["rank_in"], r["rank_shifted"]) for m, r in rows.iterrows()} == {
        "dncnn[model_sigma=25]": (1, 4), "unet[train_task=denoising_s25]": (2, 3), "dip": (3, 1), "tv": (4, 2)}


def test_a_shifted_instance_without_a_twin_shows_its_shifted_result_alone() -> None:
    frame = synthetic.shift_frame()
    frame = frame[frame["label"] != "dncnn"]  # released weights whose own-σ model did not run
    rows = robustness.shift_table(frame).set_index("method")
    alone = rows.loc["dncnn[model_sigma=25]"]
    assert (alone["shifted"], alone["paired"], alone["twin"]) == (True, False, "")
    assert math.isnan(alone["in_mean"]) and math.isnan(alone["drop_mean"]) and math.isnan(alone["rank_in"])
    assert alone["rank_shifted"] == 4  # last after the shift, behind DIP, TV and the shifted U-Net
    assert rows.loc["unet[train_task=denoising_s25]", "rank_in"] == 1  # ranked among those with a result before
    text = tables.to_markdown(robustness_report.table(frame))
    assert "| dncnn[model_sigma=25] | — | 4 | — |" in text and "— → 4" in text


def test_the_export_has_the_shift_columns() -> None:
    long = long_results(synthetic.shift_frame())
    psnr = long[long["metric"] == "psnr"]
    shifted = psnr[psnr["label"] == "unet[train_task=denoising_s25]"]
    columns = ["task", "train_task", "train_set", "shift"]
    assert set(shifted[columns].itertuples(index=False, name=None)) == {
        ("denoising_s50", "denoising_s25", "embedded", "noise σ 25 → 50")}
    assert set(psnr.loc[psnr["method"] == "dip", "train_task"]) == {""}
    assert set(psnr.loc[psnr["label"] == "unet", "shift"]) == {""}


def test_the_report_has_the_robustness_section(tmp_path: Path) -> None:
    index = reports.build_report(synthetic.shift_frame(), tmp_path, title="shift")
    html = index.read_text(encoding="utf-8")
    section = html[html.index("<section id='robustness'>"):]
    section = section[: section.index("</section>")]
    assert "noise σ 25 → 50" in section and "unet[train_task=denoising_s25]" in section
    assert "fig-robustness" in section and "data:image/png" in section
    assert "## Robustness: when the test condition moves" in (tmp_path / "tables.md").read_text(encoding="utf-8")
    assert (tmp_path / "figures" / "robustness.png").stat().st_size > 0
    empty = reports.build_report(synthetic.demo_frame(), tmp_path / "none", title="none").read_text(encoding="utf-8")
    assert "No shift cell in these results" in empty


@pytest.mark.usefixtures("one_thread")
def test_a_small_run_of_a_unet_trained_on_another_noise_level(tmp_path: Path) -> None:
    profile = _profile(["trivial", "unet", "unet[train_task=denoising_s25]"], ["denoising_s25", "denoising_s50"])
    summary = runner.run_benchmark(profile, results_dir=tmp_path / "r", tracking_uri=f"sqlite:///{tmp_path / 'ml.db'}",
                                   progress=False)
    assert not summary.failed
    frame = ResultsStore(tmp_path / "r" / "results.sqlite").frame()
    learnt = {(r.label, r.task): (r.info.get("train_task"), r.info.get("train_set"), r.info.get("train_content"))
              for r in frame.itertuples()}
    assert learnt[("unet[train_task=denoising_s25]", "denoising_s50")] == ("denoising_s25", "embedded", "natural")
    assert learnt[("unet", "denoising_s50")] == ("denoising_s50", "embedded", "natural")
    assert learnt[("trivial", "denoising_s50")] == (None, None, None)
    # one training per condition: the shifted instance reuses the weights trained on σ = 25
    shifted = frame[(frame["label"] == "unet[train_task=denoising_s25]") & (frame["task"] == "denoising_s50")]
    twin_s25 = frame[(frame["label"] == "unet") & (frame["task"] == "denoising_s25")]
    assert float(shifted["train_s"].iloc[0]) == pytest.approx(float(twin_s25["train_s"].iloc[0]))
    table = robustness.shift_table(frame)
    row = table[table["method"] == "unet[train_task=denoising_s25]"].iloc[0]
    assert (row["shift"], row["twin"], row["images"]) == ("noise σ 25 → 50", "unet", 1)
    assert math.isfinite(row["drop_mean"])
    assert set(table["method"]) == {"unet[train_task=denoising_s25]", "trivial"}  # the twin is the pair's left end
