# PSNR / SSIM / scale-invariant PSNR against the ground truth (datasets that have one), and
# the no-reference figures; a method that sees neighbouring frames is rerun on a few leave-out
# windows for its next-frame score, so the row's model is an input.
rule evaluate:
    input:
        unpack(model_inputs),
        predict=rules.gather_predict.output[0],
        noise=rules.noise_model.output.json,
        gt=lambda w: [row(w).ground_truth] if Path(row(w).ground_truth).is_file() else [],
    output:
        json=f"{RES}/{{dataset}}/metrics.json",
        tsv=f"{RES}/{{dataset}}/metrics.tsv",
    params:
        store=raw_store,
        out_dir=parent_of_output(1),
        method=lambda w: row(w).method,
        gt=lambda w: row(w).ground_truth,
        gt_axes=lambda w: row(w).ground_truth_axes,
        model=model_dir_arg,
        cfg=to_json(CFG.predict),
        method_cfg=method_params,
        seed=SEED,
    conda:
        CONDA_ENV
    log:
        f"{RES}/logs/{{dataset}}/evaluate.log",
    benchmark:
        f"{RES}/benchmarks/{{dataset}}/evaluate.tsv"
    resources:
        # Plane by plane over the input and every output (+ at most 8 leave-out predictions).
        mem_mb=mem_request(4000),
        runtime=runtime_request(10, per_gb=2),
        slurm_partition=partition(),
    shell:
        "denoise evaluate --store '{params.store}' --output-dir {params.out_dir} --method {params.method}"
        " --ground-truth '{params.gt}' --gt-axes '{params.gt_axes}' --json {output.json}"
        " --tsv {output.tsv} --noise-model {input.noise} {params.model}"
        " --params '{params.cfg}' --method-params '{params.method_cfg}' --seed {params.seed} 2> {log}"
