"""studies/teaforn_study.py: the grid it runs, the commands it writes and how it summarises runs (no training)."""

from study_scripts import load_script


def load_study():
    return load_script("teaforn_study")


def test_rows_equal_steps_and_equal_compute():
    study = load_study()
    rows = {r["name"]: r for r in study.row_specs(100, [1, 2])}
    for name in ("teaforn-n2-uniform", "teaforn-n2-decay", "teaforn-n3-uniform", "teaforn-n3-decay"):
        assert rows[name]["steps"] == rows["tf"]["steps"] == 100  # equal steps
    # equal compute: TF gets N times the steps of TeaForN with N levels
    assert rows["tf-2x"]["steps"] == 2 * rows["teaforn-n2-uniform"]["steps"]
    assert rows["tf-3x"]["steps"] == 3 * rows["teaforn-n3-decay"]["steps"]
    assert rows["char-tf"]["seeds"] == [1] and rows["tf"]["seeds"] == [1, 2]


def test_train_command_flags():
    study = load_study()
    args = study.argparse.Namespace(data="data/ccpd", n_layer=2, n_head=2, n_embd=128, block=128, batch=16, lr=3e-3,
                                    warmup=30, val_windows=64, steps=300, val_points=4, threads=1)
    rows = {r["name"]: r for r in study.row_specs(300, [1])}
    cmd = study.train_command(args, rows["teaforn-n3-decay"], 7, "runs/study/x")
    text = " ".join(cmd)
    assert "--objective teaforn --teaforn-n 3 --teaforn-weights decay" in text
    assert "--seed 7" in text and "--max-steps 300" in text and "--threads 1" in text
    char = " ".join(study.train_command(args, rows["char-tf"], 1, "runs/study/c"))
    assert "--tokenizer char" in char and "--block-size 512" in char  # 4 tokens a move: same moves per window
    tf3 = " ".join(study.train_command(args, rows["tf-3x"], 1, "runs/study/t"))
    assert "--max-steps 900" in tf3 and "--val-every 75" in tf3  # validations at the same steps as the S-step rows


def fake_record(seed, top1, legal4, ms):
    free = {"legal": {k: legal4 for k in study_ks()}, "match": {k: 0.1 for k in study_ks()}}
    arena = {"score": 0.5, "illegal_attempts": {"rate": 0.2}}
    return {"seed": seed, "eval": {"top1": top1, "top5": 0.5, "top1_raw": 0.2, "legal_rate": 0.6, "nll": 3.0, "free_run": free},
            "arena_random": arena, "arena_fsf": arena, "train_seconds": 60.0, "tokens_per_sec_median": 1000.0,
            "ms_per_step": ms, "val_curve": {"val/acc": [(99, 0.3)], "val/loss": [(99, 3.1)]}}


def study_ks():
    return ("1", "2", "4", "8", "16")


def test_aggregate_mean_half_range_and_step_ratio():
    study = load_study()
    rows = study.row_specs(100, [1, 2])
    records = {("tf", 1): fake_record(1, 0.30, 0.5, 100.0), ("tf", 2): fake_record(2, 0.34, 0.7, 100.0),
               ("teaforn-n2-uniform", 1): fake_record(1, 0.28, 0.6, 210.0),
               ("teaforn-n2-uniform", 2): fake_record(2, 0.28, 0.6, 190.0)}
    agg = study.aggregate(rows, records)
    assert set(agg) == {"tf", "teaforn-n2-uniform"}
    top1 = agg["tf"]["metrics"]["top1"]
    assert abs(top1["mean"] - 0.32) < 1e-12 and abs(top1["half_range"] - 0.02) < 1e-12
    assert top1["values"] == [0.30, 0.34]
    assert study.pct(top1) == "32.0 ±2.0"
    ratios = study.step_time_ratios(agg)
    assert ratios["tf"] == 1.0 and abs(ratios["teaforn-n2-uniform"] - 2.0) < 1e-12
    table = study.tables(agg, rows, ratios)
    assert "| `tf` | 100 | 1,2 | 32.0 ±2.0 |" in table and "2.00x" in table
    assert "| `teaforn-n2-uniform` | 60.0 ±0.0 |" in table  # free-run legal@1 row
