"""Sampling backends behind one interface, and generator fine-tuning (``policy.sft``)."""

from prmkit.policy import hf as _hf  # noqa: F401  (registers the "hf" backend)
from prmkit.policy import openai as _openai  # noqa: F401  (registers "openai"; the SDK loads on use)
from prmkit.policy import vllm as _vllm  # noqa: F401  (registers "vllm"; vLLM loads on use)
from prmkit.policy.base import Completion, Policy, make_policy, policy_names, register_policy

__all__ = ["Completion", "Policy", "make_policy", "policy_names", "register_policy"]
