"""The capture vocabulary (ARCHITECTURE.md section 5): one set of stage names for C++,
Python, the CLI and the notebooks. Every stage is stored per token row."""

# Before the first layer.
GLOBAL_STAGES_PRE = ("embed",)

# Per layer, in execution order.
LAYER_STAGES = (
    "attn_norm", "q", "k", "v", "q_normed", "k_normed", "q_rope", "k_rope", "attn_out",
    "attn_proj", "ffn_inp", "ffn_norm", "moe_router_logits", "moe_router_probs",
    "moe_router_indices", "moe_router_weights", "moe_expert_gate", "moe_expert_up",
    "moe_expert_swiglu", "moe_expert_out", "moe_ffn_out", "layer_out",
)

# After the last layer.
GLOBAL_STAGES_POST = ("final_norm", "logits")

ALL_STAGES = GLOBAL_STAGES_PRE + LAYER_STAGES + GLOBAL_STAGES_POST
