# Training jobs (train, bootstrap_n2v): one GPU unless `train.device: cpu`; patches are
# streamed from the store, so memory does not grow with the image; time is set by the steps.
TRAIN_MINUTES = CFG.train.max_minutes + 30 if CFG.train.max_minutes else 240
TRAIN_RESOURCES = dict(
    gpu=gpus("train"),
    slurm_partition=partition("train"),
    slurm_extra=gpu_extra("train"),
    mem_mb=mem_request(12000),
    # train.max_minutes caps the training loop; else 4 h (steps-bound, not size-bound).
    runtime=runtime_request(CFG.train.max_minutes + 30 if CFG.train.max_minutes else 240),
)

# A group's training jobs (train_group, bootstrap_group_n2v): the same (patches are streamed
# from the stores: memory bounded by the batch, not the group), the time of one training.
GROUP_TRAIN_RESOURCES = dict(
    TRAIN_RESOURCES,
    runtime=lambda wildcards, attempt: int(math.ceil(attempt * TRAIN_MINUTES)),
)


# Noise2Void / N2V2 training (methods with a train stage only). Resumes from its last checkpoint.
rule train:
    input:
        unpack(train_inputs),
    output:
        f"{RES}/{{dataset}}/model/model.json",
    params:
        store=raw_store,
        model_dir=parent_of_output(1),
        method=lambda w: row(w).method,
        cfg=to_json(CFG.train),
        method_cfg=method_params,
        seed=SEED,
        extra=train_extra_args,
    conda:
        CONDA_ENV
    log:
        f"{RES}/logs/{{dataset}}/train.log",
    benchmark:
        f"{RES}/benchmarks/{{dataset}}/train.tsv"
    threads: network_threads(CFG.train.threads)
    resources:
        **TRAIN_RESOURCES,
    shell:
        "denoise train --store '{params.store}' --ingest {input.ingest} --model-dir {params.model_dir}"
        " --method {params.method} --params '{params.cfg}' --method-params '{params.method_cfg}'"
        " --seed {params.seed} {params.extra}"
        " 2> {log}"


# A sheet group's members file: one line (store, ingest sentinel) per row, read by the group's
# train / bootstrap / noise-model jobs (a group of any size keeps a short command line).
rule group_members:
    localrule: True
    output:
        f"{RES}/groups/{{group}}/members.tsv",
    params:
        members=group_members,
    conda:
        CONDA_ENV
    log:
        f"{RES}/logs/groups/{{group}}/group_members.log",
    resources:
        mem_mb=500,
        runtime=5,
        slurm_partition=partition(),
    script:
        "../scripts/group_members.py"


# A sheet group: one model trained on patches from every row's store (drawn in proportion to
# their size, normalised with the pooled statistics), shared by the rows' predict; PN2V with the
# group's noise model, DecoNoising with its one PSF.
rule train_group:
    input:
        unpack(group_train_inputs),
    output:
        f"{RES}/groups/{{group}}/model/model.json",
    params:
        model_dir=parent_of_output(1),
        method=group_method,
        cfg=to_json(CFG.train),
        method_cfg=lambda w: CFG.method_json(group_method(w)),
        seed=SEED,
        extra=train_extra_args,
    conda:
        CONDA_ENV
    log:
        f"{RES}/logs/groups/{{group}}/train.log",
    benchmark:
        f"{RES}/benchmarks/groups/{{group}}/train.tsv"
    threads: network_threads(CFG.train.threads)
    resources:
        **GROUP_TRAIN_RESOURCES,
    shell:
        "denoise train --group-members {input.members} --model-dir {params.model_dir}"
        " --method {params.method} --params '{params.cfg}' --method-params '{params.method_cfg}'"
        " --seed {params.seed} {params.extra} 2> {log}"


# A PN2V group's gmm_bootstrap noise model: one N2V model of all the group's stores.
rule bootstrap_group_n2v:
    input:
        members=rules.group_members.output[0],
        ingests=group_ingests,
    output:
        f"{RES}/groups/{{group}}/bootstrap_n2v/model.json",
    params:
        model_dir=parent_of_output(1),
        cfg=to_json(CFG.train),
        method_cfg=CFG.method_json("n2v"),
        seed=SEED,
    conda:
        CONDA_ENV
    log:
        f"{RES}/logs/groups/{{group}}/bootstrap_n2v.log",
    benchmark:
        f"{RES}/benchmarks/groups/{{group}}/bootstrap_n2v.tsv"
    threads: network_threads(CFG.train.threads)
    resources:
        **GROUP_TRAIN_RESOURCES,
    shell:
        "denoise train --group-members {input.members} --model-dir {params.model_dir}"
        " --method n2v --params '{params.cfg}' --method-params '{params.method_cfg}'"
        " --seed {params.seed} 2> {log}"


# An N2V model of the data, whose predictions serve as pseudo-clean signal for the PN2V
# gmm_bootstrap noise model (no calibration data needed).
rule bootstrap_n2v:
    input:
        rules.ingest.output[0],
    output:
        f"{RES}/{{dataset}}/bootstrap_n2v/model.json",
    params:
        store=raw_store,
        model_dir=parent_of_output(1),
        cfg=to_json(CFG.train),
        method_cfg=CFG.method_json("n2v"),
        seed=SEED,
    conda:
        CONDA_ENV
    log:
        f"{RES}/logs/{{dataset}}/bootstrap_n2v.log",
    benchmark:
        f"{RES}/benchmarks/{{dataset}}/bootstrap_n2v.tsv"
    threads: network_threads(CFG.train.threads)
    resources:
        **TRAIN_RESOURCES,
    shell:
        "denoise train --store '{params.store}' --ingest {input} --model-dir {params.model_dir}"
        " --method n2v --params '{params.cfg}' --method-params '{params.method_cfg}'"
        " --seed {params.seed} 2> {log}"


# A sheet `model` that is one of our BMZ packages (denoise export-bmz): its network back into a
# model directory (model.pt + model.json), which predict then uses like a trained one.
rule import_bmz:
    input:
        lambda w: row(w).model,
    output:
        f"{RES}/{{dataset}}/bmz_model/model.json",
    params:
        model_dir=parent_of_output(1),
    conda:
        CONDA_ENV
    log:
        f"{RES}/logs/{{dataset}}/import_bmz.log",
    resources:
        mem_mb=2000,
        runtime=10,
        slurm_partition=partition(),
    shell:
        "denoise import-bmz '{input}' {params.model_dir} > {log} 2>&1"
