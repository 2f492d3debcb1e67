"""Every metric key the project logs, defined once. The README's glossary explains each.

MLflow rejects '@' in keys: ``pass_at_1``, never ``pass@1``.
"""

PASS_AT_1 = "pass_at_1"                    # held-out pass@1 (mean reward over tasks x samples)
EVAL_SUCCESSES = "eval/successes"          # passing samples in that evaluation
EVAL_TRIALS = "eval/trials"                # samples graded in that evaluation

TRAIN_REWARD_MEAN = "train/reward_mean"    # mean binary reward of the step's RL samples
TRAIN_ENTROPY = "train/entropy"            # mean per-token entropy of the policy on its samples
TRAIN_KL_TO_START = "train/kl_to_start"    # KL(pi || pi_start), per token, k3 estimator
TRAIN_LOSS = "train/loss"                  # the scalar that was differentiated
TRAIN_GRAD_NORM = "train/grad_norm"        # global L2 norm of the gradient before clipping
TRAIN_RESPONSE_LENGTH = "train/response_length"  # mean completion length, tokens
TRAIN_DISTINCT_RATIO = "train/distinct_ratio"    # distinct programs / programs in the batch

SFT_LOSS = "sft/loss"                      # bootstrap: cross-entropy on solution tokens
SFT_PASS_AT_1 = "sft/pass_at_1"            # bootstrap: pass@1 on its own held-out slice

CHAIN_END = "chain/end_pass_at_1"
CHAIN_PEAK = "chain/peak_pass_at_1"
CHAIN_GAP = "chain/mean_peak_to_end_gap"
