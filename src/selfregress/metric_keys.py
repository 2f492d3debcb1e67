"""Every key the project logs (metrics, tags, params), defined once. The README's glossary explains the metrics.

MLflow rejects '@' in keys: ``pass_at_1``, never ``pass@1``.
"""

PASS_AT_1 = "pass_at_1"                    # held-out pass@1 (mean reward over tasks x samples)
EVAL_SUCCESSES = "eval/successes"          # passing samples in that evaluation
EVAL_TRIALS = "eval/trials"                # samples graded in that evaluation
# The same counts on the even-indexed eval tasks only: two disjoint halves for signature.py's cross-fit.
EVAL_SUCCESSES_EVEN = "eval/successes_even"
EVAL_TRIALS_EVEN = "eval/trials_even"

TRAIN_REWARD_MEAN = "train/reward_mean"    # mean binary reward of the step's RL samples
TRAIN_ENTROPY = "train/entropy"            # mean per-token entropy of the policy on its samples
TRAIN_KL_TO_START = "train/kl_to_start"    # KL(pi || pi_start) of whole completions (sum_t k3), kl condition only
TRAIN_LOSS = "train/loss"                  # the scalar that was differentiated
TRAIN_GRAD_NORM = "train/grad_norm"        # global L2 norm of the gradient before clipping
TRAIN_RESPONSE_LENGTH = "train/response_length"  # mean completion length, tokens
TRAIN_DISTINCT_RATIO = "train/distinct_ratio"    # distinct programs / programs in the batch

SANDBOX_ERRORS = "grader/sandbox_errors"   # sandbox_error verdicts of a step (training + evaluation), each retried once

SFT_LOSS = "sft/loss"                      # bootstrap: cross-entropy on solution tokens
SFT_PASS_AT_1 = "sft/pass_at_1"            # bootstrap: pass@1 on its own held-out slice
# bootstrap: the kept model's pass@1, linked to its checkpoint. Not `pass_at_1`: its one point at
# the SFT step (e.g. 350) would share the experiment's pass_at_1 chart with the chains' steps 0-63.
SFT_BASE_PASS_AT_1 = "sft/base_pass_at_1"

CHAIN_END = "chain/end_pass_at_1"
CHAIN_PEAK = "chain/peak_pass_at_1"
CHAIN_GAP = "chain/mean_peak_to_end_gap"
# chain runs: the campaign index at each global step, a staircase that marks where each campaign
# begins. Unprefixed on purpose: the UI puts it beside `pass_at_1` (its sections: prefixes A-Z, then the rest).
CHAIN_CAMPAIGN = "campaign_index"

# ---- the report split: read by no decision (records.report_split, report_eval) --------------------
# On each campaign run, at its last step: its start (step 0), its peak (the step of the highest
# selection pass_at_1, ES's rule) and its end, evaluated on the report split and on the RL set.
REPORT_POINTS = ("start", "peak", "end")
REPORT_PASS_AT_1 = {p: f"report/pass_at_1_{p}" for p in REPORT_POINTS}     # report-split pass@1
REPORT_SUCCESSES = {p: f"report/successes_{p}" for p in REPORT_POINTS}     # its passing samples
REPORT_TRIALS = {p: f"report/trials_{p}" for p in REPORT_POINTS}           # its graded samples
RLSET_PASS_AT_1 = {p: f"rlset/pass_at_1_{p}" for p in REPORT_POINTS}       # pass@1 on the RL task set
RLSET_SUCCESSES = {p: f"rlset/successes_{p}" for p in REPORT_POINTS}
RLSET_TRIALS = {p: f"rlset/trials_{p}" for p in REPORT_POINTS}
REPORT_PEAK_STEP = "report/peak_step"      # the selection-chosen peak step those figures are of
CHAIN_REPORT_END = "report/end_pass_at_1"  # chain runs: the last campaign's report/pass_at_1_end
TABLE_PREFIX = "table/"                    # report runs: table/<condition>/<column of table.csv>

# ---- storage: checkpoint bytes (retention.py) -----------------------------------------------------
CHECKPOINT_BYTES = "storage/checkpoint_bytes"  # campaign runs, at each step that wrote a checkpoint: its files' bytes
BYTES_WRITTEN = "storage/bytes_written"    # campaign runs (at the last step) and chain runs: checkpoint bytes written
BYTES_KEPT = "storage/bytes_kept"          # the same runs: of those, the bytes still stored after retention
PRUNED = "selfregress.pruned"              # LoggedModel tag: "true" once retention deleted its weights
PRUNED_STEPS = "selfregress.pruned_steps"  # campaign runs: the steps whose weights retention deleted ("3,4")

# ---- tags: what a run is, and where it belongs ----------------------------------------------------
KIND = "selfregress.kind"                   # bootstrap | evaluate | chain | campaign | sweep | report | ...
CONDITION = "condition"                    # chain and campaign runs: the condition's name
SEED = "seed"                              # chain and campaign runs: the chain seed
CHAIN_ID = "chain_id"                      # a chain's id, on its run and on each of its campaigns
CAMPAIGN = "campaign"                      # campaign runs: the campaign's index in its chain
MODEL = "model"                            # chain runs: the start model the chain resolved
SWEEP_ID = "sweep_id"                      # chain and report runs of one sweep
CONFIG_HASH = "selfregress.config_hash"    # chain runs: hash of the settings that decide its numbers
CODE_VERSION = "selfregress.code_version"  # chain runs: hash of the code that decides its numbers
BASE_MODEL = "selfregress.base_model"      # chain runs: the base, pinned (models:/<LoggedModel id> or a folder)
BASE_DIGEST = "selfregress.base_digest"    # chain runs: sha256 of the base's weights (also in the config hash)
PROCESSES = "selfregress.processes"        # chain runs: training processes (accelerate launch)
SUPERSEDED = "selfregress.superseded"      # campaign runs a kill cut short: not part of the chain
RESUMES = "selfregress.resumes"            # resume runs: the chain run they continued
STUDY_NAME = "study_name"                  # tune and trial runs: the Optuna study
TRIAL = "trial"                            # trial runs: the Optuna trial number
STORAGE = "storage"                        # tune runs: the Optuna storage URL, password redacted
SEARCH_SPACE = "search_space"              # tune runs: the dimensions searched, as `search` spells them
NOTE = "mlflow.note.content"               # chain, campaign, study runs: what the run is, in words (the UI's Description)
ERROR = "selfregress.error"                # a refused run: the one-line error it was refused with
EXPERIMENT_KIND = "mlflow.experimentKind"  # experiment tag: the UI opens model training, not GenAI, on it
MODEL_TRAINING = "custom_model_development"  # its value for every experiment the project writes to

# ---- the controller's record on a campaign run ---------------------------------------------------
START_MODEL = "controller/start_model"            # tag: the URI the campaign started from
START_MODEL_ID = "controller/start_model_id"      # tag: its LoggedModel id ('' for a folder)
DECISION = "controller/decision"                  # tag: continue | rollforward_peak | transfer | revert
NEXT_START_MODEL = "controller/next_start_model"  # tag: where the next campaign starts
NEXT_BUDGET = "controller/next_budget"            # metric: the next campaign's steps
LR_MULTIPLIER = "controller/lr_multiplier"        # metric: the next campaign's lr multiplier
PEAK_STEP = "controller/peak_step"                # metric (ES): the campaign's peak step
P_TRANSFER = "controller/p_transfer"              # metric (CARE): P(candidate > incumbent)
P_REGRESS = "controller/p_regress"                # metric (CARE): P(end < start)
TIME_PREFIX = "time/"                             # metrics: seconds per phase of the campaign

# ---- campaign run params --------------------------------------------------------------------------
BUDGET_PARAM = "budget"                    # the campaign's steps
LR_PARAM = "lr"                            # the campaign's learning rate (the chain's lr x multiplier)
LR_MULTIPLIER_PARAM = "lr_multiplier"      # the multiplier it ran with

# ---- other runs' tags ---------------------------------------------------------------------------
STEP = "step"                              # checkpoint (LoggedModel) tags: the step, with CAMPAIGN
OPTUNA_STATE = "optuna.state"              # trial runs: PRUNED when Optuna pruned the trial
REPORT_CHAINS = "chains"                   # report runs: the chain run ids it read
PROMOTED_VERSION = "promoted_version"      # promote runs: the registered version
PROMOTED_MODEL_ID = "promoted_model_id"    # promote runs: its LoggedModel id
SERVABLE_MODEL_ID = "servable_model_id"    # promote runs: the registered pyfunc (serving.py)

