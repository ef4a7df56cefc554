# Any input -> chunked OME-Zarr 0.5 (the store is a param; the JSON sentinel is the output).
rule ingest:
    input:
        source_files,
    output:
        f"{RES}/{{dataset}}/ingest.json",
    params:
        uri=lambda w: row(w).uri,
        axes=lambda w: row(w).axes,
        store=raw_store,
        cfg=to_json(CFG.ingest),
    conda:
        CONDA_ENV
    log:
        f"{RES}/logs/{{dataset}}/ingest.log",
    benchmark:
        f"{RES}/benchmarks/{{dataset}}/ingest.tsv"
    threads: 2
    resources:
        # Lazy, chunked copy: memory bounded by chunks in flight; time grows with the size.
        mem_mb=mem_request(4000),
        runtime=runtime_request(10, per_gb=2),
        slurm_partition=partition(),
    shell:
        "denoise ingest --input '{params.uri}' --axes '{params.axes}' --store '{params.store}'"
        " --sentinel {output} --params '{params.cfg}' 2> {log}"
