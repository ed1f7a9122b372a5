"""The SQuAD and masked-language-modelling recipes (``scripts/squad_tickets.sh``,
``scripts/mlm_tickets.sh``): IMP, the dense seeds and every fixed-mask fine-tune, as
:func:`utils.recipe_lib.tickets_plan` lays them out, with each family's budget profiles."""
from utils.recipe_lib import Plan, RecipeError, finish_lines, oneshot_masks, q, tickets_plan

SQUAD = {  # the paper's commands: batch 16, lr 3e-5, 384/128, IMP rounds of 22,000 steps, 4-epoch fine-tunes
    "paper": dict(train="train-v1.1.json", predict="dev-v1.1.json", SPARSITIES="10 20 30 40 50 60 70 80 90",
                  METHODS="imp random omp reinit shuffled", SETS="paper", lr="3e-5", batch=16, seq=384, stride=128,
                  steps=22000, imp_epochs=40, ft="--num_train_epochs 4", subset="", ft_log=5500),
    # CPU-sized: 38 dev articles to train on, 300 questions of the other 10 to evaluate
    "small": dict(train="train-split-of-dev-v1.1.json", predict="eval-split-of-dev-v1.1.json",
                  SPARSITIES="50 60 70", METHODS="imp random reinit", SETS="no_pooler", lr="1e-4", batch=16, seq=192,
                  stride=64, steps=125, imp_epochs=20, ft="--max_steps 250",
                  subset="--max_train_samples 2000 --max_eval_samples 300", ft_log=0),
}
MLM = {  # the paper's commands: IMP batch 16 lr 5e-5 rounds of 10,000 steps; fine-tunes batch 8, 20,000 steps
    "paper": dict(train="pretrain_data/en.train", eval="pretrain_data/en.valid", SPARSITIES="10 20 30 40 50 60 70 80 90",
                  METHODS="imp random omp reinit shuffled", SETS="paper", lr="5e-5", steps=10000, imp_batch=16,
                  ft_batch=8, ft="--max_steps 20000 --logging_steps 2000", imp_epochs=1, block="", subset=""),
    # CPU-sized: WikiText-2, blocks of 128, rounds of 100 steps, 200-step fine-tunes
    "small": dict(train="../shared/data/wikitext-2/test.txt", eval="../shared/data/wikitext-2/valid.txt",
                  SPARSITIES="50 60 70", METHODS="imp random reinit", SETS="no_pooler", lr="1e-4", steps=100,
                  imp_batch=8, ft_batch=8, ft="--max_steps 200 --logging_steps 0", imp_epochs=10,
                  block="--block_size 128", subset="--max_eval_samples 100"),
}


def _profile(s, profiles):
    if s.profile not in profiles:
        raise RecipeError(f"PROFILE must be paper or small, not '{s.profile}'")
    p = profiles[s.profile]
    s.check(*(s.get(k, p[k]) for k in ("SPARSITIES", "SETS", "METHODS")))
    return p


def _one_task(s, name, head, scripts, common, imp_flags, ft_flags, expect):
    """The plan of a one-task recipe: the one-shot masks (stage 1 with IMP and the dense seeds),
    then every fixed-mask fine-tune (stage 2), in ``OUT/<squad|mlm>``."""
    plan = Plan()
    n_oneshot = oneshot_masks(s, plan, head)
    n_imp = tickets_plan(s, plan, (1, 2), f"{s.out}/{'squad' if head == 'squad' else 'mlm'}", scripts, common,
                         imp_flags, ft_flags, expect)
    plan.header = finish_lines(s, name, n_imp, 10, n_oneshot, len(plan.runs))
    plan.footer = [f"{name}: all runs finished; report: {s.python} report.py {s.out}"]
    return plan


def squad_tickets(s):
    p = _profile(s, SQUAD)
    data = s.path("DATA", "../shared/data/squad")
    train = s.path("TRAIN_FILE", f"{data}/{p['train']}")
    predict = s.path("PREDICT_FILE", f"{data}/{p['predict']}")
    s.seeds("1 2 3")
    per_gpu = s.per_process(p["batch"])
    s.need_model("and DATA=<SQuAD folder>")
    steps, top = p["steps"], max(int(x) for x in s.sparsities)
    stop = "" if s.profile == "paper" else f"--max_steps {steps * top // 10}"
    common = (f"--model_type bert --model_name_or_path {q(s.model)} --do_train --do_eval --do_lower_case "
              f"--train_file {q(train)} --predict_file {q(predict)} --per_gpu_train_batch_size {per_gpu} "
              f"--per_gpu_eval_batch_size 64 --learning_rate {p['lr']} --max_seq_length {p['seq']} "
              f"--doc_stride {p['stride']} {p['subset']} {s.amp} --overwrite_output_dir {s.extra}")
    return _one_task(s, "squad_tickets", "squad", ("LT_squad.py", "squad_trans.py"), common,
                     f"--evaluate_during_training --logging_steps {steps} --save_steps {steps} "
                     f"--num_train_epochs {p['imp_epochs']} {stop}",
                     f"{p['ft']} --evaluate_during_training --logging_steps {p['ft_log']} --save_steps 0",
                     lambda d, sp: f"{d}/checkpoint-{steps * int(sp) // 10}/mask.pt")


def mlm_tickets(s):
    p = _profile(s, MLM)
    train, evals = s.path("TRAIN", p["train"]), s.path("EVAL", p["eval"])
    s.seeds("1 2 3")
    imp_batch, ft_batch = s.per_process(p["imp_batch"]), s.per_process(p["ft_batch"])
    s.need_model("TRAIN= and EVAL= text files")
    steps, top = p["steps"], max(int(x) for x in s.sparsities)
    stop = "" if s.profile == "paper" else f"--max_steps {steps * (top // 10 - 1)}"  # the first prune is at step 0
    common = (f"--model_type bert --model_name_or_path {q(s.model)} --mlm --train_data_file {q(train)} "
              f"--eval_data_file {q(evals)} --do_train --do_eval --per_gpu_eval_batch_size 16 --learning_rate "
              f"{p['lr']} {p['block']} {p['subset']} {s.amp} --overwrite_output_dir {s.extra}")
    return _one_task(s, "mlm_tickets", "pretrain", ("LT_pretrain.py", "pretrain_trans.py"), common,
                     f"--per_gpu_train_batch_size {imp_batch} --evaluate_during_training --logging_steps {steps} "
                     f"--save_steps {steps} --num_train_epochs {p['imp_epochs']} {stop}",
                     f"--per_gpu_train_batch_size {ft_batch} {p['ft']} --save_steps 0",
                     lambda d, sp: f"{d}/checkpoint-{steps * (int(sp) // 10 - 1)}/mask.pt")
