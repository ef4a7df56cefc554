# Rule group_members: the group's (store, ingest) list, from the rule's params, into a TSV
# (written here rather than on a command line, which a group of many rows would make too long).
from denoise.io.group_members import write_group_members

write_group_members(snakemake.output[0], snakemake.params.members)  # noqa: F821
with open(snakemake.log[0], "w") as log:  # noqa: F821
    log.write(f"{len(snakemake.params.members)} members -> {snakemake.output[0]}\n")  # noqa: F821
