"""Training throughput: Lightning vs a bare PyTorch loop, TeaForN cost, and model sizes on this CPU.

    .venv/bin/python benchmarks/bench_training.py lightning [--size 4x256] [--batch 32x256] [--threads 2]
    .venv/bin/python benchmarks/bench_training.py teaforn   [--size 4x256] [--batch 32x256] [--threads 2]
    .venv/bin/python benchmarks/bench_training.py sizes     [--sizes 4x128,4x192,...] [--batches 16x128,...]
                                                            [--threads 1,2]

``lightning``  tokens/s of the Lightning training step (GPTModule + Trainer with the run's callbacks and logging:
               gradient clipping, LR schedule, CSV logs, LR monitor) vs a bare loop doing the same work (forward,
               cross-entropy, backward, clip, AdamW, LambdaLR) on the same model (same initial weights) and the
               same batch, measured in one process, alternating rounds so that load from other processes hits both
               alike. Also Lightning fed by the real XiangqiDataModule (memmap windows + mirror) when --data is
               given. Goal: ratio >= 0.9.
``teaforn``    step time of TeaForN N=2 and N=3 over teacher forcing (bare loop, alternating). Goal <= 1.1 x N.
``sizes``      training tokens/s (bare loop: forward + backward + AdamW) for each model size and batch shape at
               each thread count, with the parameter count. Sizes are n_layer x n_embd (heads of 64 dims, or fewer
               heads for small widths); batches are batch_size x block_size.

Numbers are medians over --rounds rounds of --steps timed steps each (after --warmup untimed steps); the machine is
shared, so compare numbers from the same run only.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from xiangqi_gpt.model.gpt import GPT, GPTConfig  # noqa: E402
from xiangqi_gpt.data.tokenizer import get_tokenizer  # noqa: E402
from xiangqi_gpt.model.training import lr_factor  # noqa: E402


def parse_pair(text: str) -> tuple[int, int]:
    a, b = text.lower().split("x")
    return int(a), int(b)


def model_config(size: str, block_size: int, tokenizer: str = "move", dropout: float = 0.0) -> GPTConfig:
    n_layer, n_embd = parse_pair(size)
    n_head = max(1, n_embd // 64) if n_embd >= 128 else max(1, n_embd // 32)
    return GPTConfig(n_layer=n_layer, n_embd=n_embd, n_head=n_head, block_size=block_size, tokenizer=tokenizer,
                     dropout=dropout)


def fixed_batch(batch: int, block: int, vocab: int, data: str | None, seed: int = 0) -> torch.Tensor:
    if data:
        from xiangqi_gpt.model.datamodule import TrainWindows

        return TrainWindows(data, get_tokenizer("move"), block, batch, mirror_p=0.5, seed=seed).batch(0)
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, block + 1), generator=g)


class BareLoop:
    """forward + cross-entropy (or TeaForN) + backward + clip + AdamW + LambdaLR, nothing else."""

    def __init__(self, model: GPT, teaforn_n: int = 1, lr: float = 1e-3, bf16: bool = False):
        self.model = model
        self.bf16 = bf16
        self.opt = torch.optim.AdamW(model.optim_groups(0.1), lr=lr, betas=(0.9, 0.95))
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: lr_factor(s, 10, 10_000, 0.1))
        self.teaforn = None
        if teaforn_n > 1:
            from teaforn import TeaForN

            self.teaforn = TeaForN(n=teaforn_n)

    def step(self, batch: torch.Tensor) -> float:
        m = self.model
        x, y = batch[:, :-1], batch[:, 1:]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            if self.teaforn is None:
                logits = m.head(m.decode(m.embed(x)))
                loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1))
            else:
                loss = self.teaforn(m.embed, m.decode, m.head, x, y).loss
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        self.opt.step()
        self.sched.step()
        return float(loss)

    def time_steps(self, batch: torch.Tensor, steps: int, warmup: int, cpu: bool = False):
        """Seconds per step over ``steps`` steps after ``warmup`` untimed ones; with ``cpu``, (wall, CPU) seconds
        (CPU = this process's CPU time, all threads)."""
        for _ in range(warmup):
            self.step(batch)
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(steps):
            self.step(batch)
        wall, cpu_s = (time.perf_counter() - t0) / steps, (time.process_time() - c0) / steps
        return (wall, cpu_s) if cpu else wall


# --------------------------------------------------------------------------------------------------------------------
# lightning vs bare


def lightning_seconds_per_step(module, loader, steps: int, warmup: int, log_dir: str, bf16: bool = False) -> float:
    from lightning.pytorch import Callback, Trainer
    from lightning.pytorch.callbacks import LearningRateMonitor

    from xiangqi_gpt.model.training import RunLogger

    class Clock(Callback):
        t0 = t1 = None

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == warmup:
                self.t0 = time.perf_counter()

        def on_train_end(self, trainer, pl_module):
            self.t1 = time.perf_counter()

    clock = Clock()
    trainer = Trainer(max_steps=warmup + steps, accelerator="cpu", devices=1, gradient_clip_val=1.0,
                      precision="bf16-mixed" if bf16 else "32-true",
                      logger=RunLogger(log_dir), log_every_n_steps=10, limit_val_batches=0,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[clock, LearningRateMonitor(logging_interval="step")])
    trainer.fit(module, train_dataloaders=loader)
    return (clock.t1 - clock.t0) / steps


class RepeatBatch(torch.utils.data.IterableDataset):
    def __init__(self, batch):
        self.batch = batch

    def __iter__(self):
        while True:
            yield self.batch


def bench_lightning(args) -> None:
    from xiangqi_gpt.model.training import GPTModule

    torch.set_num_threads(args.threads)
    batch_size, block = parse_pair(args.batch)
    n_layer, n_embd = parse_pair(args.size)
    cfg = model_config(args.size, block)
    module = GPTModule(n_layer=n_layer, n_embd=n_embd, n_head=cfg.n_head, block_size=block, lr=1e-3,
                       warmup_steps=10, lr_decay_steps=10_000)
    init = {k: v.clone() for k, v in module.model.state_dict().items()}
    batch = fixed_batch(batch_size, block, cfg.vocab_size, args.data)
    tokens = batch_size * block
    loader = torch.utils.data.DataLoader(RepeatBatch(batch), batch_size=None)
    dm_loader = None
    if args.data:
        from xiangqi_gpt.model.datamodule import XiangqiDataModule

        dm_loader = XiangqiDataModule(args.data, "move", block_size=block, batch_size=batch_size,
                                      mirror_p=0.5, val_windows=1).train_dataloader()
    print(f"model {args.size} ({module.model.num_params() / 1e6:.2f}M params), batch {batch_size}x{block} "
          f"= {tokens} tokens, {args.threads} thread(s), {'bf16-mixed' if args.bf16 else 'fp32'}, "
          f"{args.rounds} rounds of {args.steps} steps")
    results: dict[str, list[float]] = {"bare": [], "lightning": [], "lightning+data": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            module.model.load_state_dict(init)
            bare = BareLoop(module.model, bf16=args.bf16)
            results["bare"].append(tokens / bare.time_steps(batch, args.steps, args.warmup))
            module.model.load_state_dict(init)
            results["lightning"].append(tokens / lightning_seconds_per_step(module, loader, args.steps, args.warmup,
                                                                            f"{tmp}/l{r}", args.bf16))
            if dm_loader is not None:
                module.model.load_state_dict(init)
                results["lightning+data"].append(tokens / lightning_seconds_per_step(
                    module, dm_loader, args.steps, args.warmup, f"{tmp}/d{r}", args.bf16))
            print(f"  round {r + 1}: " + ", ".join(f"{k} {v[-1]:,.0f} tok/s" for k, v in results.items() if v))
    med = {k: statistics.median(v) for k, v in results.items() if v}
    print(f"median tokens/s: " + ", ".join(f"{k} {v:,.0f}" for k, v in med.items()))
    print(f"ratio lightning / bare = {med['lightning'] / med['bare']:.3f}  (goal >= 0.9)")
    if "lightning+data" in med:
        print(f"ratio lightning+datamodule / bare = {med['lightning+data'] / med['bare']:.3f}")


# --------------------------------------------------------------------------------------------------------------------
# teaforn


def bench_teaforn(args) -> None:
    torch.set_num_threads(args.threads)
    batch_size, block = parse_pair(args.batch)
    cfg = model_config(args.size, block)
    torch.manual_seed(0)
    model = GPT(cfg)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    batch = fixed_batch(batch_size, block, cfg.vocab_size, args.data)
    print(f"model {args.size} ({model.num_params() / 1e6:.2f}M params), batch {batch_size}x{block}, "
          f"{args.threads} thread(s), {args.rounds} rounds of {args.steps} steps")
    levels = [1, 2, 3]
    times: dict[int, list[float]] = {n: [] for n in levels}
    for r in range(args.rounds):
        for n in levels:
            model.load_state_dict(init)
            times[n].append(BareLoop(model, teaforn_n=n, bf16=args.bf16).time_steps(batch, args.steps, args.warmup))
        print(f"  round {r + 1}: " + ", ".join(f"N={n} {times[n][-1] * 1000:.0f} ms" for n in levels))
    tf = statistics.median(times[1])
    for n in levels[1:]:
        t = statistics.median(times[n])
        print(f"TeaForN N={n}: {t * 1000:.0f} ms/step vs teacher forcing {tf * 1000:.0f} ms = {t / tf:.2f}x "
              f"(goal <= {1.1 * n:.1f}x)")


# --------------------------------------------------------------------------------------------------------------------
# sizes


def bench_sizes(args) -> None:
    sizes = args.sizes.split(",")
    batches = [parse_pair(b) for b in args.batches.split(",")]
    threads = [int(t) for t in args.threads_list.split(",")]
    print(f"training tokens/s (bare loop: fwd+bwd+AdamW{', bf16 autocast' if args.bf16 else ''}"
          f"{f', dropout {args.dropout}' if args.dropout else ''}), "
          f"median of {args.rounds} x {args.steps} steps")
    print("wall = tokens per wall second (depends on the load from other processes); "
          "cpu = tokens per CPU second of this process (with 1 thread: the speed on a core of its own)")
    print(f"{'size':>8} {'params':>8} {'batch':>8} "
          + " ".join(f"{f'{t}thr wall':>11} {f'{t}thr cpu':>10}" for t in threads))
    for size in sizes:
        for batch_size, block in batches:
            cfg = model_config(size, block, dropout=args.dropout)
            torch.manual_seed(0)
            model = GPT(cfg)
            batch = fixed_batch(batch_size, block, cfg.vocab_size, args.data)
            row = []
            for t in threads:
                torch.set_num_threads(t)
                loop = BareLoop(model, bf16=args.bf16)
                runs = [loop.time_steps(batch, args.steps, args.warmup if i == 0 else 0, cpu=True)
                        for i in range(args.rounds)]
                tokens = batch_size * block
                row.append(f"{tokens / statistics.median(r[0] for r in runs):>11,.0f} "
                           f"{tokens / statistics.median(r[1] for r in runs):>10,.0f}")
            print(f"{size:>8} {model.num_params() / 1e6:>7.2f}M {batch_size:>3}x{block:<4} " + " ".join(row),
                  flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("lightning", "teaforn", "sizes"))
    ap.add_argument("--size", default="4x256", help="n_layer x n_embd (lightning, teaforn)")
    ap.add_argument("--batch", default="32x256", help="batch_size x block_size (lightning, teaforn)")
    ap.add_argument("--threads", default="2", help="torch threads (sizes: a comma list)")
    ap.add_argument("--sizes", default="4x128,4x192,6x192,4x256,6x256")
    ap.add_argument("--batches", default="16x128,32x128,32x256")
    ap.add_argument("--data", default=None, help="a prepared dataset directory (real token windows); "
                                                 "default: random tokens")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (Lightning: precision=bf16-mixed)")
    ap.add_argument("--dropout", type=float, default=0.0, help="sizes: model dropout")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    if args.what == "sizes":
        args.threads_list = args.threads
        bench_sizes(args)
        return
    args.threads = int(args.threads)
    {"lightning": bench_lightning, "teaforn": bench_teaforn}[args.what](args)


if __name__ == "__main__":
    main()
