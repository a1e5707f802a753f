# One image for the api, scheduler and trainer binaries. libtorch comes from the torch 2.11.0
# wheel (the CUDA build, so the trainer uses an NVIDIA GPU when the container is given one).
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3-venv && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/torch && /opt/torch/bin/pip install --no-cache-dir torch==2.11.0
ENV LIBTORCH=/opt/torch/lib/python3.11/site-packages/torch
WORKDIR /src
COPY . .
RUN cargo build --release --workspace --bins

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libgomp1 && rm -rf /var/lib/apt/lists/*
# The binaries' rpath points at this folder, so they start without LD_LIBRARY_PATH.
COPY --from=build /opt/torch /opt/torch
COPY --from=build /src/target/release/cairn-api /src/target/release/cairn-scheduler /src/target/release/cairn-trainer /usr/local/bin/
WORKDIR /var/lib/cairn
