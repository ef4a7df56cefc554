# Poisson-Gaussian noise parameters per channel, from the noisy data alone.
rule noise_model:
    input:
        rules.ingest.output[0],
    output:
        json=f"{RES}/{{dataset}}/noise_model.json",
        plot=f"{RES}/{{dataset}}/noise_model.png",
    params:
        store=raw_store,
        cfg=to_json(CFG.noise_model),
        seed=SEED,
    conda:
        CONDA_ENV
    log:
        f"{RES}/logs/{{dataset}}/noise_model.log",
    benchmark:
        f"{RES}/benchmarks/{{dataset}}/noise_model.tsv"
    resources:
        # A bounded sample of chunks (noise_model.max_samples): memory and reading flat;
        # listing the store grows a little.
        mem_mb=mem_request(4000),
        runtime=runtime_request(10, per_gb=0.05),
        slurm_partition=partition(),
    shell:
        "denoise noise-model --store '{params.store}' --ingest {input} --out {output.json}"
        " --plot {output.plot} --params '{params.cfg}' --seed {params.seed} 2> {log}"


# PN2V's noise model p(x|s): Poisson-Gaussian, histogram or GMM (see the dataset sheet).
rule fit_noise_model:
    input:
        unpack(fit_noise_inputs),
    output:
        json=f"{RES}/{{dataset}}/pn2v_noise_model.json",
        plot=f"{RES}/{{dataset}}/pn2v_noise_model.png",
    params:
        store=raw_store,
        kind=lambda w: row(w).noise_model,
        extra=fit_noise_args,
        cfg=to_json(CFG.noise_model),
        seed=SEED,
    conda:
        CONDA_ENV
    log:
        f"{RES}/logs/{{dataset}}/fit_noise_model.log",
    benchmark:
        f"{RES}/benchmarks/{{dataset}}/fit_noise_model.tsv"
    resources:
        # Histogram / GMM fits on sampled pixel pairs (gmm_bootstrap predicts with its N2V).
        mem_mb=mem_request(8000),
        runtime=runtime_request(30, per_gb=1),
        slurm_partition=partition(),
    shell:
        "denoise fit-noise-model --kind {params.kind} --store '{params.store}'"
        " --ingest {input.ingest} {params.extra} --out {output.json} --plot {output.plot}"
        " --params '{params.cfg}' --seed {params.seed} 2> {log}"


# A sheet group's PN2V noise model, fitted once on all the group's stores (or its calibration).
rule fit_group_noise_model:
    input:
        unpack(group_noise_inputs),
    output:
        json=f"{RES}/groups/{{group}}/pn2v_noise_model.json",
        plot=f"{RES}/groups/{{group}}/pn2v_noise_model.png",
    params:
        kind=lambda w: group_row(w).noise_model,
        extra=group_noise_args,
        cfg=to_json(CFG.noise_model),
        seed=SEED,
    conda:
        CONDA_ENV
    log:
        f"{RES}/logs/groups/{{group}}/fit_noise_model.log",
    benchmark:
        f"{RES}/benchmarks/groups/{{group}}/fit_noise_model.tsv"
    resources:
        mem_mb=mem_request(8000),
        runtime=lambda wildcards, attempt: attempt * 60,
        slurm_partition=partition(),
    shell:
        "denoise fit-noise-model --kind {params.kind} --group-members {input.members}"
        " {params.extra} --out {output.json} --plot {output.plot}"
        " --params '{params.cfg}' --seed {params.seed} 2> {log}"
