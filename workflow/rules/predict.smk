# Tiled prediction: init_output -> predict scattered over N jobs (--set-scatter split=N) -> gather.
# The output stores are params; each job writes only its own units, marked done atomically.
rule init_output:
    input:
        unpack(model_inputs),
        ingest=rules.ingest.output[0],
        noise=rules.noise_model.output.json,
    output:
        f"{RES}/{{dataset}}/predict/init.json",
    params:
        **predict_params(2),
    conda:
        CONDA_ENV
    log:
        f"{RES}/logs/{{dataset}}/init_output.log",
    benchmark:
        f"{RES}/benchmarks/{{dataset}}/init_output.tsv"
    resources:
        mem_mb=mem_request(2000),
        runtime=runtime_request(10),
        slurm_partition=partition(),
    shell:
        "denoise init-output "
        "--store '{params.store}' --output-dir {params.out_dir} --method {params.method}"
        " {params.model} --noise-model {input.noise} --ingest {input.ingest}"
        " --params '{params.cfg}' --method-params '{params.method_cfg}' --seed {params.seed}"
        " --sentinel {output} 2> {log}"


rule predict:
    input:
        unpack(model_inputs),
        ingest=rules.ingest.output[0],
        noise=rules.noise_model.output.json,
        init=rules.init_output.output[0],
    output:
        f"{RES}/{{dataset}}/predict/part_{{scatteritem}}.json",
    params:
        **predict_params(2),
        index=scatter_index,
        n_jobs=scatter_count,
    conda:
        CONDA_ENV
    log:
        f"{RES}/logs/{{dataset}}/predict_{{scatteritem}}.log",
    benchmark:
        f"{RES}/benchmarks/{{dataset}}/predict_{{scatteritem}}.tsv"
    threads: network_threads(CFG.predict.threads)
    resources:
        # A GPU only for rows whose method runs a network (trained, zero-shot); memory is
        # bounded by the unit of work (peak RSS flat in the image size), time by this job's
        # share of the image (docs/scaling.md).
        gpu=gpus("predict"),
        slurm_partition=partition("predict"),
        slurm_extra=gpu_extra("predict"),
        mem_mb=mem_request(8000),
        runtime=runtime_request(15, per_gb=1024 / PREDICT_MB_PER_MIN, scattered=True),
    shell:
        "denoise predict "
        "--store '{params.store}' --output-dir {params.out_dir} --method {params.method}"
        " {params.model} --noise-model {input.noise} --ingest {input.ingest}"
        " --params '{params.cfg}' --method-params '{params.method_cfg}' --seed {params.seed}"
        " --no-init --scatter-index {params.index} --scatter-count {params.n_jobs}"
        " --sentinel {output} 2> {log}"


rule gather_predict:
    input:
        unpack(model_inputs),
        parts=gather.split(str(rules.predict.output[0]).replace("{dataset}", "{{dataset}}")),
        ingest=rules.ingest.output[0],
        noise=rules.noise_model.output.json,
    output:
        f"{RES}/{{dataset}}/predict.json",
    params:
        **predict_params(1),
        n_jobs=len(gather.split("{scatteritem}")),
    conda:
        CONDA_ENV
    log:
        f"{RES}/logs/{{dataset}}/gather_predict.log",
    benchmark:
        f"{RES}/benchmarks/{{dataset}}/gather_predict.tsv"
    resources:
        # Checks every unit marker, builds the pyramid (reads the float32 output once).
        mem_mb=mem_request(4000),
        runtime=runtime_request(10, per_gb=2),
        slurm_partition=partition(),
    shell:
        "denoise gather "
        "--store '{params.store}' --output-dir {params.out_dir} --method {params.method}"
        " {params.model} --noise-model {input.noise} --ingest {input.ingest}"
        " --params '{params.cfg}' --method-params '{params.method_cfg}' --seed {params.seed}"
        " --scatter-count {params.n_jobs} --sentinel {output} 2> {log}"
