# One self-contained HTML report for the run.
rule report:
    input:
        report_inputs,
    output:
        f"{RES}/report.html",
    params:
        results=parent_of_output(1),
        datasets=",".join(DATASETS),
        cfg=to_json(CFG.report),
    conda:
        CONDA_ENV
    log:
        f"{RES}/logs/report.log",
    benchmark:
        f"{RES}/benchmarks/report.tsv"
    shell:
        "denoise report --results {params.results} --datasets {params.datasets} --out {output}"
        " --params '{params.cfg}' 2> {log}"
