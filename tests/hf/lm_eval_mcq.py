"""lm-evaluation-harness's side of the multiple-choice test (tests/hf_test.cpp,
HfMcq.UndoScoresQuestionsAsLmEvaluationHarnessDoes).

  lm_eval_mcq.py MODEL_DIR QUESTIONS.jsonl OUT.json

runs the real harness (the lm-eval package, its "hf" model on the CPU in
float32) on a local multiple-choice task made of QUESTIONS (undo's format,
data/mcq.h, which is the one WMDP and MMLU ship: question, choices, answer)
with the template undo scores by ("Question: Q\\nAnswer:", each choice after a
space), and writes each question's choice log-likelihoods, acc and acc_norm,
and the task's acc, acc_norm and their standard errors, to OUT. Offline: the
questions are a local JSON dataset and the model a local directory.
"""
import json
import os
import sys
import tempfile

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TASK = """task: undo_mcq
dataset_path: json
dataset_kwargs:
  data_files:
    test: {questions}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: choices
doc_to_target: answer
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""


def main(model_dir, questions, out):
    work = tempfile.mkdtemp(prefix="undo-lm-eval-")
    os.environ.setdefault("HF_HOME", os.path.join(work, "hf"))
    import lm_eval
    from lm_eval.tasks import TaskManager

    tasks = os.path.join(work, "tasks")
    os.makedirs(tasks)
    with open(os.path.join(tasks, "undo_mcq.yaml"), "w") as f:
        f.write(TASK.format(questions=os.path.abspath(questions)))
    results = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={model_dir},dtype=float32", tasks=["undo_mcq"], device="cpu",
        batch_size=1, log_samples=True, task_manager=TaskManager(include_path=tasks))
    samples = sorted(results["samples"]["undo_mcq"], key=lambda s: s["doc_id"])
    per = [{"doc_id": s["doc_id"], "loglikelihoods": [r[0] for r in s["filtered_resps"]],
            "acc": s["acc"], "acc_norm": s["acc_norm"]} for s in samples]
    r = results["results"]["undo_mcq"]
    with open(out, "w") as f:
        json.dump({"questions": per, "acc": r["acc,none"], "acc_stderr": r["acc_stderr,none"],
                   "acc_norm": r["acc_norm,none"], "acc_norm_stderr": r["acc_norm_stderr,none"]}, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
