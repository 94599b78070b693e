"""DistributedDataParallel on CPU: 2 processes (gloo) launched by torchrun end identical."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from rsgan.checkpoint import load_model

WORKER = textwrap.dedent(
    """
    import os, sys
    import torch
    from torch.utils.data import Dataset
    from rsgan.models import CycleGANConfig, DCGANConfig
    from rsgan.training import TrainOptions, fit, prepare_cyclegan, prepare_dcgan

    torch.set_num_threads(1)
    # one process group for both runs (fit joins it instead of making its own)
    torch.distributed.init_process_group("gloo")

    class Chips(Dataset):
        def __init__(self, images):
            self.images = images
        def __len__(self):
            return len(self.images)
        def __getitem__(self, i):
            mask = torch.ones(self.images.shape[-2:], dtype=torch.bool)
            mask[: 4 * (i % 3)] = False  # some chips have a nodata strip
            return {"image": self.images[i] * mask, "mask": mask}

    out = sys.argv[1]
    rank = int(os.environ["RANK"])
    g = torch.Generator().manual_seed(0)
    a = torch.rand(8, 2, 32, 32, generator=g) * 2 - 1
    b = torch.rand(8, 3, 32, 32, generator=g) * 2 - 1
    opts = TrainOptions(steps=3, batch_size=2, sample_every=2, checkpoint_every=0,
                        log_every=1, progress=False)
    config = CycleGANConfig(in_channels_a=2, ngf=4, ndf=4, n_blocks=1, pool_size=2)
    runs = {
        "cyclegan": prepare_cyclegan(Chips(a), Chips(b), config=config, options=opts),
        "dcgan": prepare_dcgan(Chips(torch.rand(8, 3, 64, 64, generator=g) * 2 - 1),
                               config=DCGANConfig(nz=4, ngf=2, ndf=2), options=opts),
    }
    for kind, run in runs.items():
        fit(run, f"{out}/{kind}", opts)
        state = {f"{n}.{k}": v for n, net in run.nets.items()
                 for k, v in net.state_dict().items()}
        torch.save(state, f"{out}/{kind}/weights_rank{rank}.pt")
    # both ranks done before the group goes: a rank tearing gloo down while the other
    # still talks to it aborted ~1 run in 13 ("terminate called without an active exception")
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _loopback() -> str:
    """Name of the loopback interface (gloo otherwise picks the host name's address)."""
    names = [name for _, name in socket.if_nameindex()]
    return "lo" if "lo" in names else names[0]


@pytest.mark.timeout(300)
def test_two_gloo_processes_end_with_identical_weights(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME=_loopback())
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        str(script),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for kind in ("cyclegan", "dcgan"):
        out = tmp_path / kind
        w0 = torch.load(out / "weights_rank0.pt", weights_only=True)
        w1 = torch.load(out / "weights_rank1.pt", weights_only=True)
        assert w0.keys() == w1.keys()
        for key in w0:
            torch.testing.assert_close(w0[key], w1[key], rtol=0, atol=0, msg=key)
        # rank 0 saved what both hold, and only rank 0 wrote the run's files
        saved = load_model(out / "model.safetensors")
        name = next(iter(saved.nets))
        first = next(iter(saved.nets[name].state_dict()))
        torch.testing.assert_close(saved.nets[name].state_dict()[first], w0[f"{name}.{first}"])
        records = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in records] == [1, 2, 3]
        assert sorted(p.name for p in (out / "samples").iterdir()) == ["step_000002.png"]


@pytest.mark.timeout(300)
def test_rsgan_train_under_torchrun_speaks_once_and_resumes(
    tmp_path: Path, make_raster: Callable[..., Path]
) -> None:
    """`torchrun --nproc_per_node 2 rsgan train ...`: every rank printed its warnings, its
    "checkpoint:" line and on Ctrl-C its resume hint, so each line came twice; rank 0
    speaks for the run (errors still come from every rank). The same command with
    --resume continues the run from its state under DDP."""
    scene = make_raster("farm.tif", width=128, height=128, count=3, crs=None)
    script = tmp_path / "rsgan_cli.py"
    script.write_text("import sys\nfrom rsgan.cli.main import cli\nsys.exit(cli())\n")
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME=_loopback())
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[1]), *sys.path])
    out = tmp_path / "run"

    def torchrun(steps: int, *extra: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
               "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port",
               str(_free_port()), str(script), "train", "dcgan", str(scene), "--out",
               str(out), "--ngf", "2", "--ndf", "2", "--nz", "4", "--batch-size", "1",
               "--steps", str(steps), "--log-every", "1", "--sample-every", "1", "-q",
               *extra]  # fmt: skip
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=280)

    first = torchrun(1)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.count("checkpoint:") == 1, first.stdout
    assert first.stderr.count("have no CRS") == 1, first.stderr[-3000:]
    resumed = torchrun(2, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.count("checkpoint:") == 1, resumed.stdout
    records = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert load_model(out / "model.safetensors").steps == 2
    assert sorted(p.name for p in (out / "samples").iterdir()) == [
        "step_000001.png", "step_000002.png"
    ]  # fmt: skip


RESUME_WORKER = textwrap.dedent(
    """
    import json, os, sys
    import torch
    from torch.utils.data import Dataset
    from rsgan.models import DCGANConfig
    from rsgan.training import TrainOptions, fit, prepare_dcgan

    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo")

    class Chips(Dataset):
        def __init__(self, images):
            self.images, self.read = images, []
        def __len__(self):
            return len(self.images)
        def __getitem__(self, i):
            self.read.append(i)
            return {"image": self.images[i], "mask": torch.ones(64, 64, dtype=torch.bool)}

    out = sys.argv[1]
    chips = Chips(torch.rand(12, 1, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    seen = []
    for steps, batch, resume in ((1, 2, False), (5, 1, True)):
        opts = TrainOptions(steps=steps, batch_size=batch, resume=resume, sample_every=0,
                            checkpoint_every=0, progress=False)
        run = prepare_dcgan(chips, config=DCGANConfig(channels=1, nz=4, ngf=2, ndf=2),
                            options=opts)
        chips.read.clear()
        fit(run, out, opts)
        seen += chips.read
        torch.distributed.barrier()
    with open(f"{out}/read_rank{os.environ['RANK']}.json", "w") as f:
        json.dump(seen, f)
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    """
)


@pytest.mark.timeout(300)
def test_resume_with_another_batch_size_under_ddp_reads_the_rest_of_the_epoch(
    tmp_path: Path,
) -> None:
    """2 processes, 12 chips: 1 step of 2 per process reads 4, then a resume with batch
    size 1 reads the other 8, each once (the position counted batches of 2 per process:
    the resume started at the second chip of each process, reading 2 twice)."""
    script = tmp_path / "worker.py"
    script.write_text(RESUME_WORKER)
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME=_loopback())
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
           "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port",
           str(_free_port()), str(script), str(tmp_path / "run")]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    read = [json.loads((tmp_path / "run" / f"read_rank{r}.json").read_text()) for r in (0, 1)]
    g = torch.Generator().manual_seed(0)  # DistributedSampler's order of epoch 0, seed 0
    order = torch.randperm(12, generator=g).tolist()
    assert read == [order[0::2], order[1::2]]
