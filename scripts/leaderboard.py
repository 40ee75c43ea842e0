"""Snakemake adapter of rule leaderboard."""
from inflbench.jobs import run
from inflbench.studies.detection.stages import stage_leaderboard

run(snakemake, stage_leaderboard)  # noqa: F821 (snakemake is injected)
