# Training jobs: each trains its runs (results/runs/<run id>/, the id being the hash of the
# resolved configuration) one after the other in one `moleflow run-many` process, so that the
# process start-up is paid once per job (`runs_per_job`, set per study). The longest jobs
# start first (priority: rank by estimated work). A rerun of a job resumes each of its runs
# after its last finished task (a finished run only rebuilds its summary).
import json
import re


def _job_runs_json(ids):
    return json.dumps({f"{RESULTS}/runs/{run_id}": RUNS[run_id].config for run_id in ids}, sort_keys=True)


# What a profile's `set-resources` gives the name `train` (the SLURM profile: the GPU partition)
# applies to every training job's rule: their names differ by job.
TRAIN_RESOURCES = {"gpu": config["gpu_per_run"],
                   **{k: getattr(v, "raw", v) for k, v in dict(workflow.resource_settings.overwrite_resources.get("train", {})).items()}}

# The results folder is a wildcard held to its one value: a rule with a wildcard is not
# a target, so `snakemake --list-target-rules` lists only what a user calls.
for _job, _ids in PLAN.jobs.items():

    rule:
        name:
            f"train_{_job}"
        input:
            features=sorted({m for run_id in _ids for m in feature_markers(RUNS[run_id].dataset)}),
        output:
            [f"{{results}}/runs/{run_id}/summary.json" for run_id in _ids],
        wildcard_constraints:
            results=re.escape(RESULTS),
        params:
            runs=_job_runs_json(_ids),
        log:
            f"{{results}}/logs/runs/{_job}.log",
        benchmark:
            f"{{results}}/benchmarks/run/{_job}.tsv"
        threads: config["threads"]
        priority: PLAN.job_priority(_job)
        resources:
            **TRAIN_RESOURCES,
        conda:
            ENVIRONMENT
        shell:
            "moleflow run-many --runs-json {params.runs:q} --quiet --threads {threads} > {log} 2>&1"


for _study, _ids in PLAN.studies.items():

    rule:
        name:
            f"study_{_study}"
        input:
            expand(f"{RESULTS}/runs/{{run_id}}/summary.json", run_id=_ids),
            [f"{RESULTS}/mlflow/logged/{e}.json" for e in PLAN.experiments if e.split("/")[0] == _study],
