"""Model files: load a trained GPT from a Lightning checkpoint or an exported ``.pt``, and export one.

Main names: :func:`load_model`, :func:`read_checkpoint`, :func:`export_model` and the ``export`` command
(:func:`add_export_command`); problems are one-line :class:`~xiangqi_gpt.errors.CheckpointError`.
Design notes: docs/design.md#model-checkpoint
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..errors import CheckpointError, ConfigError

FORMAT = "xiangqi-gpt-model"
VERSION = 1
DEFAULT_PATH = Path(__file__).resolve().parent.parent / "checkpoints" / "default.pt"
#: hyper-parameters of the training objective copied into an exported file's info
OBJECTIVE_KEYS = ("objective", "teaforn_n", "teaforn_weights", "teaforn_feed", "teaforn_mask_warmup",
                  "teaforn_feedback_scale", "lr", "warmup_steps", "lr_decay_steps", "weight_decay")


@dataclass
class LoadedModel:
    model: object  # xiangqi_gpt.model.gpt.GPT, in eval mode
    tokenizer: object  # xiangqi_gpt.data.tokenizer.Tokenizer
    info: dict = field(default_factory=dict)


def _torch_load(path: Path) -> dict:
    import torch

    if not path.is_file():
        raise CheckpointError(f"{path}: model file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a corrupt or foreign file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable model file ({first[:200]})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a xiangqi-gpt model file (a {type(obj).__name__}, not a dict)")
    return obj


def _config_from(path: Path, values: dict):
    from .gpt import GPTConfig

    known = {f.name for f in fields(GPTConfig)}
    try:
        return GPTConfig.from_dict({k: v for k, v in values.items() if isinstance(k, str) and k in known})
    except (ConfigError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path}: bad model config ({str(e)[:200]})") from None


def _checked_state(path: Path, state: dict) -> dict:
    """The weights of a file, checked: names are text and values tensors."""
    import torch

    for key, value in state.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{path}: a weight name is not text ({type(key).__name__})")
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: weight {key!r} is not a tensor (a {type(value).__name__})")
    return state


def read_checkpoint(path) -> tuple[object, dict, dict]:
    """``(GPTConfig, state_dict (GPT keys, original dtypes), info)`` from a ``.ckpt`` or exported ``.pt``."""
    path = Path(path)
    obj = _torch_load(path)
    if obj.get("format") == FORMAT:
        if obj.get("version") != VERSION:
            raise CheckpointError(f"{path}: model file version {obj.get('version')!r}, this code reads {VERSION}")
        if not isinstance(obj.get("config"), dict) or not isinstance(obj.get("state_dict"), dict):
            raise CheckpointError(f"{path}: model file without config/state_dict")
        info = obj.get("info") or {}
        if not isinstance(info, dict):
            raise CheckpointError(f"{path}: model file info is a {type(info).__name__}, not a table")
        return _config_from(path, obj["config"]), _checked_state(path, obj["state_dict"]), dict(info)
    if "state_dict" in obj and "hyper_parameters" in obj:  # Lightning checkpoint from train.py
        if not isinstance(obj["hyper_parameters"], dict) or not isinstance(obj["state_dict"], dict):
            raise CheckpointError(f"{path}: Lightning checkpoint whose hyper_parameters or state_dict is not a table")
        hp = dict(obj["hyper_parameters"])
        if "tokenizer" not in hp:
            raise CheckpointError(f"{path}: Lightning checkpoint without a tokenizer in its hyper-parameters; "
                                  f"not written by train.py")
        state = {k[len("model."):]: v for k, v in obj["state_dict"].items()
                 if isinstance(k, str) and k.startswith("model.")}
        if not state:
            raise CheckpointError(f"{path}: Lightning checkpoint without model.* weights")
        extra = obj.get("xiangqi_gpt") if isinstance(obj.get("xiangqi_gpt"), dict) else {}
        info = {"source": str(path), "source_format": "lightning", "global_step": _plain(obj.get("global_step")),
                "epoch": _plain(obj.get("epoch")), **{k: hp[k] for k in OBJECTIVE_KEYS if k in hp}}
        for key in ("num_params", "tokens_seen"):
            if key in extra:
                info[key] = extra[key]
        callbacks = obj.get("callbacks") if isinstance(obj.get("callbacks"), dict) else {}
        for name, cb_state in callbacks.items():
            if isinstance(name, str) and (name.startswith("RunCheckpoint") or name.startswith("ModelCheckpoint")):
                score = cb_state.get("current_score") if isinstance(cb_state, dict) else None
                try:
                    info["val_loss"] = float(score)
                except (TypeError, ValueError, RuntimeError):
                    pass                    # no score, or not one number: not recorded
        return _config_from(path, hp), _checked_state(path, state), info
    raise CheckpointError(f"{path}: neither an exported xiangqi-gpt model (.pt) nor a train.py checkpoint (.ckpt)")


def _plain(value):
    """A step or epoch count as a plain int (None if it is not one)."""
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError, RuntimeError, OverflowError):
        return None


#: the most elements the position tables of a model (its non-weight buffers) may hold, about 1 GB in fp32: a config
#: asking for more (a huge block_size) is refused before anything is allocated
MAX_TABLE_ELEMENTS = 1 << 28


def _fit_weights(path: Path, config, state: dict) -> None:
    """Check that ``state`` has exactly the names and shapes of the model ``config`` describes, and finite values,
    before the model is allocated (a config may ask for any size; the weights in the file are what is real)."""
    import torch

    from .gpt import GPT

    tables = config.block_size * (config.n_embd // config.n_head)     # rope cos and sin: block x head/2 each
    if tables > MAX_TABLE_ELEMENTS:
        raise CheckpointError(f"{path}: the model config asks for {tables:,} table elements (block_size "
                              f"{config.block_size}); the limit is {MAX_TABLE_ELEMENTS:,}")
    emb = state.get("tok_emb.weight")
    if emb is not None and tuple(emb.shape) != (config.vocab_size, config.n_embd):
        raise CheckpointError(f"{path}: weights do not fit the model config (tok_emb.weight is {tuple(emb.shape)}, "
                              f"the config needs {(config.vocab_size, config.n_embd)})")
    blocks = {key.split(".")[1] for key in state if isinstance(key, str) and key.startswith("blocks.")
              and key.count(".") >= 2}
    if config.n_layer != len(blocks):       # before the shell is built: a huge n_layer would take forever
        raise CheckpointError(f"{path}: weights do not fit the model config (n_layer {config.n_layer}, the file "
                              f"holds {len(blocks)} block{'' if len(blocks) == 1 else 's'})")
    try:
        with torch.device("meta"):
            shell = GPT(config)
    except (RuntimeError, ValueError, TypeError, OverflowError, MemoryError, ConfigError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{path}: bad model config ({first[:200]})") from None
    expected = shell.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not fit the model config (missing {', '.join(missing[:3]) or '-'}; "
                              f"unexpected {', '.join(unexpected[:3]) or '-'})")
    for key, want in expected.items():
        if tuple(state[key].shape) != tuple(want.shape):
            raise CheckpointError(f"{path}: weights do not fit the model config ({key} is "
                                  f"{tuple(state[key].shape)}, the config needs {tuple(want.shape)})")
    tables = sum(b.numel() for b in shell.buffers())
    if tables > MAX_TABLE_ELEMENTS:
        raise CheckpointError(f"{path}: the model config asks for {tables:,} table elements (block_size "
                              f"{config.block_size}); the limit is {MAX_TABLE_ELEMENTS:,}")
    for key, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{path}: weight {key!r} holds NaN or infinite values; the model cannot play")


def load_model(path: str | os.PathLike | None = None, device: str = "cpu",
               mirror_ensemble: float | None = None) -> LoadedModel:
    """The model in ``path`` (``.ckpt`` or ``.pt``; None = the packaged default), fp32, in eval mode.

    ``mirror_ensemble``: the weight of the mirrored view at inference (:meth:`GPT.set_mirror_ensemble`); None takes
    the file's own (``info["mirror_ensemble"]``, 0 when absent), 0 turns it off."""
    import torch

    from .gpt import GPT
    from ..data.tokenizer import get_tokenizer

    if path is None:
        if not DEFAULT_PATH.is_file():
            raise CheckpointError(f"{DEFAULT_PATH}: no default model shipped; train one and export it with "
                                  f"`python -m xiangqi_gpt export RUN/checkpoints/last.ckpt --out {DEFAULT_PATH}`")
        path = DEFAULT_PATH
    path = Path(path)
    config, state, info = read_checkpoint(path)
    state = {k: v.float() if torch.is_floating_point(v) else v for k, v in state.items()}
    if "lm_head.weight" not in state and "tok_emb.weight" in state:  # tied: stored once
        state["lm_head.weight"] = state["tok_emb.weight"]
    _fit_weights(path, config, state)
    model = GPT(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise CheckpointError(f"{path}: weights do not fit the model config "
                              f"({' '.join(s.strip() for s in first[:2])[:300]})") from None
    model.to(device).eval()
    if mirror_ensemble is None:
        try:
            model.set_mirror_ensemble(info.get("mirror_ensemble", 0.0))
        except (ConfigError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: info mirror_ensemble: {e}") from None
    else:
        model.set_mirror_ensemble(mirror_ensemble)
    info.setdefault("path", str(path))
    return LoadedModel(model=model, tokenizer=get_tokenizer(config.tokenizer), info=info)


def model_payload(model, info: dict | None = None, fp16: bool = True) -> dict:
    """The exported-file dict for a GPT (weights fp16 by default; the tied head is not stored twice)."""
    import torch

    state = {}
    for k, v in model.state_dict().items():
        if k == "lm_head.weight" and v.data_ptr() == model.tok_emb.weight.data_ptr():
            continue
        v = v.detach().cpu()
        state[k] = v.half() if fp16 and v.is_floating_point() else v.clone()
    return {"format": FORMAT, "version": VERSION, "config": model.config.to_dict(), "state_dict": state,
            "info": {**(info or {}), "dtype": "float16" if fp16 else "float32"}}


def export_model(ckpt_path, out, fp16: bool = True, mirror_ensemble: float | None = None) -> dict:
    """Convert a checkpoint (``.ckpt`` or ``.pt``) to an exported ``.pt``; returns its info. ``mirror_ensemble``
    (None: keep the source's) is stored in the info, for every loader to apply (0 removes it)."""
    import torch

    from ..errors import XiangqiError
    from ..outpaths import check_output_file

    out = Path(out)
    try:
        check_output_file(out, "--out")             # before the work
    except XiangqiError as e:
        raise CheckpointError(str(e)) from None
    if out.parent and not out.parent.exists():
        raise CheckpointError(f"{out.parent}: no such directory for the exported model")
    loaded = load_model(ckpt_path, mirror_ensemble=mirror_ensemble)
    info = dict(loaded.info)
    info.pop("path", None)
    info.pop("mirror_ensemble", None)
    if loaded.model.mirror_weight:
        info["mirror_ensemble"] = loaded.model.mirror_weight
    info["num_params"] = loaded.model.num_params()
    payload = model_payload(loaded.model, info, fp16=fp16)
    tmp = out.with_name(out.name + ".tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, out)
    except OSError as e:
        raise CheckpointError(f"--out {out}: cannot write the model file ({e.strerror or e})") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return payload["info"]


def mirror_weight(text: str) -> float:
    """argparse type of ``--mirror-ensemble``: a number in [0, 1) (:func:`model.check_mirror_weight`)."""
    from .gpt import check_mirror_weight

    try:
        return check_mirror_weight(text)
    except ConfigError:
        raise argparse.ArgumentTypeError(f"a number in [0, 1), got {text!r}") from None


def add_mirror_option(p: argparse.ArgumentParser, help_text: str | None = None) -> None:
    p.add_argument("--mirror-ensemble", type=mirror_weight, default=None, metavar="W",
                   help=help_text or "weight of the mirrored view at inference (the model asked again about the "
                                     "left-right mirrored game, 0 <= W < 1; 0: the plain model; default: the "
                                     "model file's own)")


def find_run_checkpoint(path) -> Path:
    """A run directory -> its best checkpoint (``checkpoints/best-*.ckpt``), else ``checkpoints/last.ckpt``."""
    path = Path(path)
    if not path.is_dir():
        return path
    ckpts = path / "checkpoints"
    best = sorted(ckpts.glob("best-*.ckpt"), key=lambda p: p.stat().st_mtime)
    if best:
        return best[-1]
    if (ckpts / "last.ckpt").is_file():
        return ckpts / "last.ckpt"
    raise CheckpointError(f"{path}: a directory without checkpoints/best-*.ckpt or checkpoints/last.ckpt")


def add_export_command(p: argparse.ArgumentParser):
    p.add_argument("checkpoint", help="a train.py checkpoint (.ckpt), a run directory (its best checkpoint), "
                                      "or an exported .pt")
    p.add_argument("--out", required=True, help="the model file to write (.pt)")
    p.add_argument("--fp32", action="store_true", help="store fp32 weights (default: fp16, half the size)")
    add_mirror_option(p, "store in the file the weight W of the mirrored view at inference, which every loader "
                         "then applies (0: none; default: keep the source's)")

    def run(args):
        src = find_run_checkpoint(args.checkpoint)
        info = export_model(src, args.out, fp16=not args.fp32, mirror_ensemble=args.mirror_ensemble)
        size = Path(args.out).stat().st_size
        step = info.get("global_step")
        print(f"exported {src} -> {args.out} ({size / 1e6:.1f} MB, {info.get('num_params', 0) / 1e6:.2f}M params"
              f"{f', step {step}' if step is not None else ''}, {info['dtype']})")

    return run
