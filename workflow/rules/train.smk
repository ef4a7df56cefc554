# Noise2Void / N2V2 training (methods with a train stage only). Resumes from its last checkpoint.
rule train:
    input:
        f"{RES}/{{dataset}}/ingest.json",
    output:
        f"{RES}/{{dataset}}/model/model.json",
    params:
        store=raw_store,
        model_dir=parent_of_output(1),
        method=lambda w: row(w).method,
        cfg=to_json(CFG.train),
        seed=SEED,
    conda:
        CONDA_ENV
    log:
        f"{RES}/logs/{{dataset}}/train.log",
    benchmark:
        f"{RES}/benchmarks/{{dataset}}/train.tsv"
    threads: workflow.cores
    resources:
        gpu=lambda w: 1 if CFG.train.device == "cuda" else 0,
    shell:
        "denoise train --store '{params.store}' --ingest {input} --model-dir {params.model_dir}"
        " --method {params.method} --params '{params.cfg}' --seed {params.seed} 2> {log}"
