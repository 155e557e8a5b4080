"""Explainers: one file per method, one verb, `explain(model, batch) -> Attribution`.

Built-ins are registered lazily as "module:Class", so importing this package imports neither torch
nor transformers. Third parties register theirs through the `effbench.explainers` entry-point group
(a name that clashes with a built-in is an error), or pass "package.module:Class" as the name.
"""

from effbench.registry import Registry

explainers = Registry("explainer", entry_point_group="effbench.explainers")

BUILTIN_EXPLAINERS = {
    "random": "effbench.explainers.random:RandomScores",
    "raw_attention": "effbench.explainers.attention:RawAttention",
    "attention_rollout": "effbench.explainers.attention:AttentionRollout",
    "effective_attention": "effbench.explainers.attention:EffectiveAttention",
    "efficient_attention": "effbench.explainers.efficient:EfficientAttention",
    "attention_norm": "effbench.explainers.attention:AttentionNorm",
    "saliency": "effbench.explainers.gradients:Saliency",
    "grad_x_input": "effbench.explainers.gradients:GradientXInput",
    "integrated_gradients": "effbench.explainers.gradients:IntegratedGradients",
    "leave_one_out": "effbench.explainers.occlusion:LeaveOneOut",
    "value_zeroing": "effbench.explainers.value_zeroing:ValueZeroing",
    "alti": "effbench.explainers.alti:ALTI",
    "globenc": "effbench.explainers.globenc:GlobEnc",
    "attention_flow": "effbench.explainers.attention_flow:AttentionFlow",
    "attn_lrp": "effbench.explainers.attn_lrp:AttnLRP",
    "oracle": "effbench.explainers.oracle:Oracle",
    "lime": "effbench.explainers.lime:Lime",
    "kernel_shap": "effbench.explainers.kernel_shap:KernelShap",
    "deeplift": "effbench.explainers.deeplift:DeepLift",
}

for _name, _target in BUILTIN_EXPLAINERS.items():
    explainers.register(_name, _target, builtin=True)


def get_explainer(name: str, **params):
    """An explainer instance by registry name (or 'package.module:Class') with its parameters."""
    return explainers.get(name)(**params)
