"""The numpy-only floor of evograd: validation, candidates and lineages, noise, fitness shaping, state
files, progress lines, benchmark functions. Nothing here imports torch or gymnasium."""
