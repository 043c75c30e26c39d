"""The AirRep network on plain transformers (AirRep §3.1): ``e(z) = W mean_i h_i(z) + b``.

:class:`AirRepNet` is a transformers encoder built *without* the pieces mean pooling does not use (no
BERT pooler unless the folder stores one), a masked mean over the last hidden state and a linear
projection. It reads three folder layouts (:mod:`airsearch.encoder_layout`):

* the **published AirRep** layout (``config.json`` ``"model_type": "airrep"``, weights ``bert.*`` and
  ``projector.weight``/``projector.bias``, the projector stored in bf16);
* the **sentence-transformers** layout airsearch saves (``modules.json``, the transformer at the
  root, ``1_Pooling``, ``2_Dense``), which ``SentenceTransformer(folder)`` also loads;
* a plain transformers folder or a sentence-transformers base encoder (an untrained AirRep: identity
  projection, zero bias [methods.md D]).

Loading is strict: every weight the network has must be in the folder and every weight in the folder
must be used, else :class:`~airsearch.errors.InputError` names the first one. Nothing is initialised
at random, so the same folder always gives the same weights and fingerprint. Weights are computed in
fp32 whatever the folder stores (a bf16 projector is upcast).
"""

from __future__ import annotations

from typing import Any

import torch

from airsearch.encoder_layout import (
    AIRREP_MODEL_TYPE,
    AIRREP_PREFIX,
    DENSE_PREFIX,
    IDENTITY,
    LEGACY_DENSE,
    LEGACY_TRANSFORMER,
    PROJECTOR_PREFIX,
    FolderLayout,
    read_weights,
)
from airsearch.errors import InputError


class AirRepNet(torch.nn.Module):
    """``bert`` (a transformers encoder), masked mean pooling, ``projector`` (``Linear(hidden, dim)``).

    ``forward`` returns the AirRep vectors ``[n, dim]``; :meth:`token_states` the last hidden state.
    The parameter names are the published layout's (``bert.*``, ``projector.*``).
    """

    def __init__(self, bert: torch.nn.Module, projector: torch.nn.Linear, tokenizer: Any) -> None:
        super().__init__()
        self.bert, self.projector = bert, projector
        self.tokenizer = tokenizer  # not a module: the tokenizer that made the token ids

    @property
    def device(self) -> torch.device:
        return self.projector.weight.device

    @property
    def hidden_size(self) -> int:
        return int(self.projector.in_features)

    def token_states(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Last hidden state ``[n, tokens, hidden]`` of padded inputs (``input_ids``, ``attention_mask``,
        optionally ``token_type_ids``)."""
        return self.bert(**features, return_dict=True).last_hidden_state

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """AirRep vectors ``[n, dim]``: the mean of the unmasked token states, then the projection."""
        return self.pool_and_project(self.token_states(features), features["attention_mask"])

    def pool_and_project(self, states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The masked mean of token states ``[n, tokens, hidden]``, then the projection: ``[n, dim]``."""
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return self.projector(pooled)

    def legacy_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights under the names a sentence-transformers AirRep had (``0.model.*``, ``2.linear.*``):
        what encoder fingerprints are computed over, so indexes built before keep their fingerprint."""
        out = {LEGACY_TRANSFORMER + k: v for k, v in self.bert.state_dict().items()}
        out.update({LEGACY_DENSE + k: v for k, v in self.projector.state_dict().items()})
        return out


def identity_projector(hidden: int) -> torch.nn.Linear:
    """The untrained AirRep projection: identity weight, zero bias [methods.md D]."""
    proj = torch.nn.Linear(hidden, hidden, bias=True)
    with torch.no_grad():
        proj.weight.copy_(torch.eye(hidden))
        proj.bias.zero_()
    return proj


def load_net(
    layout: FolderLayout, *, device: str = "cpu", trust_remote_code: bool = False, base_only: bool = False
) -> AirRepNet:
    """The network stored in ``layout`` (fp32, eval mode, on ``device``). ``base_only``: use only the
    folder's transformer and add an identity projection (an untrained AirRep on a base encoder)."""
    from airsearch.progress import quiet_libraries
    from airsearch.weights import refuse_remote_code

    refuse_remote_code(layout.root, trust_remote_code=trust_remote_code)  # one line, before any load
    quiet_libraries()
    config = _config(layout, trust_remote_code)
    weights = read_weights(layout.weights_files)
    if layout.kind == AIRREP_MODEL_TYPE:  # bert.* and projector.*, nothing else
        stray = sorted(k for k in weights if not k.startswith((AIRREP_PREFIX, PROJECTOR_PREFIX)))
        if stray:
            raise InputError(
                f"unexpected weight '{stray[0]}' (not part of an AirRep encoder)", path=layout.root
            )
        projection = _strip(weights, PROJECTOR_PREFIX)
    elif layout.dense_file is not None and not base_only:
        if layout.pooling not in (None, "mean"):
            raise InputError(
                f"an AirRep encoder pools by mean, this folder by {layout.pooling}", path=layout.root
            )
        projection = _strip(read_weights([layout.dense_file]), DENSE_PREFIX, keep_others=True)
    else:
        projection = None
    # a task model's head (cls.* beside bert.*) is not part of the encoder: only the prefix is read
    bert_weights = _strip(weights, layout.transformer_prefix)
    has_pooler = any(k.startswith("pooler.") for k in bert_weights)
    bert = _build(config, has_pooler, trust_remote_code)
    _load_strict(bert, bert_weights, layout)
    hidden = int(config.hidden_size)
    if base_only or projection is None:
        projector = identity_projector(hidden)
    else:
        projector = _projector(layout, projection, hidden)
    net = AirRepNet(bert.float(), projector.float(), _tokenizer(layout, config, trust_remote_code))
    return net.to(device).eval()


def _config(layout: FolderLayout, trust_remote_code: bool) -> Any:
    if layout.kind == AIRREP_MODEL_TYPE:  # a BERT config under another model_type: build it as BERT
        from transformers import BertConfig

        drop = ("model_type", "architectures", "auto_map")
        return BertConfig(**{k: v for k, v in layout.config.items() if k not in drop})
    import transformers
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    model_type = layout.config.get("model_type")
    if model_type not in CONFIG_MAPPING and not ("auto_map" in layout.config and trust_remote_code):
        remote = (
            "; it names its own code (auto_map): pass --trust-remote-code if you trust it"
            if "auto_map" in layout.config
            else ""
        )
        raise InputError(
            f"config.json names model type {model_type!r}, which is neither 'airrep' (the published AirRep "
            f"format) nor an architecture of the installed transformers {transformers.__version__}{remote}",
            path=layout.transformer_dir,
            field="encoder",
        )
    try:
        return AutoConfig.from_pretrained(str(layout.transformer_dir), trust_remote_code=trust_remote_code)
    except (ValueError, OSError, KeyError, TypeError) as e:
        raise InputError(
            f"cannot read the encoder's config.json: {_one_line(e)}", path=layout.transformer_dir
        ) from None


def _build(config: Any, has_pooler: bool, trust_remote_code: bool) -> torch.nn.Module:
    """The encoder without its pooler when the folder stores none; weights left uninitialised (every
    one is then loaded from the folder, strictly)."""
    from transformers import AutoModel

    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # pragma: no cover - transformers 4
        from transformers.modeling_utils import no_init_weights
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    try:
        with no_init_weights():
            try:
                return AutoModel.from_config(config, add_pooling_layer=has_pooler, **kwargs)
            except TypeError:  # a model class without a pooler option
                return AutoModel.from_config(config, **kwargs)
    except ValueError as e:  # an architecture this transformers does not know
        raise InputError(f"cannot build the encoder: {_one_line(e)}") from None


def _strip(
    weights: dict[str, torch.Tensor], prefix: str, keep_others: bool = False
) -> dict[str, torch.Tensor]:
    """The tensors named ``prefix...`` without the prefix (``keep_others``: the rest kept as named)."""
    if not prefix:
        return dict(weights)
    out = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
    if keep_others:
        out.update({k: v for k, v in weights.items() if not k.startswith(prefix)})
    return out


# buffers that older checkpoints stored and that the model now rebuilds itself
_IGNORED = ("embeddings.position_ids",)


def _load_strict(model: torch.nn.Module, weights: dict[str, torch.Tensor], layout: FolderLayout) -> None:
    """Load ``weights`` into ``model`` in fp32; refuse a missing or unexpected weight, naming it."""
    expected = model.state_dict()
    prefix = layout.transformer_prefix
    missing = sorted(k for k in expected if k not in weights)
    if missing:
        raise InputError(f"missing weight '{prefix}{missing[0]}' (the encoder needs it)", path=layout.root)
    unexpected = sorted(k for k in weights if k not in expected and k not in _IGNORED)
    if unexpected:
        raise InputError(
            f"unexpected weight '{prefix}{unexpected[0]}' (not part of the encoder)", path=layout.root
        )
    for k, v in weights.items():
        if k in expected and tuple(v.shape) != tuple(expected[k].shape):
            need = tuple(expected[k].shape)
            raise InputError(
                f"weight '{prefix}{k}' has shape {tuple(v.shape)}; the config needs {need}", path=layout.root
            )
    model.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in weights.items() if k in expected}
    )


def _projector(layout: FolderLayout, weights: dict[str, torch.Tensor], hidden: int) -> torch.nn.Linear:
    """The projection ``Linear`` from its ``weight``/``bias`` (an AirRep ``projector.*`` or a
    sentence-transformers Dense ``linear.*``), in fp32."""
    name = layout.projector_prefix
    if layout.dense_config.get("activation_function", IDENTITY[0]) not in IDENTITY:
        raise InputError("the Dense projection must have no activation function", path=layout.dense_file)
    stray = sorted(set(weights) - {"weight", "bias"})
    if stray:
        raise InputError(f"unexpected weight '{name}{stray[0]}' in the projection", path=layout.root)
    for part in ("weight", "bias") if layout.dense_config.get("bias", True) else ("weight",):
        if part not in weights:
            raise InputError(f"missing weight '{name}{part}' (the projection)", path=layout.root)
    w, bias = weights["weight"], weights.get("bias")
    if w.ndim != 2 or w.shape[1] != hidden or (bias is not None and tuple(bias.shape) != (w.shape[0],)):
        raise InputError(
            f"projection weight '{name}weight' has shape {tuple(w.shape)}; hidden size is {hidden}",
            path=layout.root,
        )
    proj = torch.nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
    with torch.no_grad():
        proj.weight.copy_(w.float())
        if bias is not None:
            proj.bias.copy_(bias.float())
    return proj


def _tokenizer(layout: FolderLayout, config: Any, trust_remote_code: bool) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(
            str(layout.transformer_dir), config=config, trust_remote_code=trust_remote_code
        )
    except (ValueError, OSError, KeyError, TypeError) as e:
        raise InputError(
            f"cannot load the encoder's tokenizer: {_one_line(e)}", path=layout.transformer_dir
        ) from None


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:300]
