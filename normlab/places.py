"""Where the assignment runs (Colab, Kaggle, or anywhere else) and, from that, where its runs and data live.

A Colab machine is recycled after hours idle or 12 hours at most, and its local disk with it: there the runs and the
CIFAR data live by default in the assignment's folder on Google Drive, which set_up() mounts. On Kaggle, whose
/kaggle/input is read-only, the notebook's set-up cell copies the assignment from an attached dataset into
/kaggle/working/norm, in the folder that Kaggle keeps across interactive sessions (with Session options >
Persistence > Files) and as the output of a saved version: the runs and the data live there. That folder is a local
disk, so a run saves its resume state there after every epoch, which loses less than copying it by time: only Drive
keeps replaced files, in a trash that fills the quota.
Everywhere else (a lab PC, a laptop) they live beside the code. NORMLAB_RUNS and NORMLAB_DATA override all three.

The settings below are environment variables, read when normlab is imported; tests point them at temporary folders.
"""
import importlib.util
import os
import shutil
import stat
import sys
from pathlib import Path
from typing import Optional, Union

SETTINGS = {
    "NORMLAB_DRIVE_MOUNT": ("/content/drive", "where set_up() mounts Google Drive on Colab"),
    "NORMLAB_DRIVE_FOLDER": ("MyDrive/norm", "the assignment's folder on Drive, under the mount point: on Colab the "
                             "runs and the data live in its runs/ and data/ unless NORMLAB_RUNS or NORMLAB_DATA say "
                             "otherwise"),
    "NORMLAB_KAGGLE_FOLDER": ("/kaggle/working/norm", "the assignment's folder on Kaggle, in the working folder "
                              "that Kaggle keeps: the runs and the data live in its runs/ and data/ unless "
                              "NORMLAB_RUNS or NORMLAB_DATA say otherwise"),
    "NORMLAB_KAGGLE_INPUT": ("/kaggle/input", "where Kaggle mounts the datasets attached to a notebook, read-only: "
                             "the set-up cell looks for the assignment there"),
    "NORMLAB_RUNS": ("", "where training runs are written (runs/grid is submitted); empty: the default of this place"),
    "NORMLAB_DATA": ("", "where the datasets are; empty: the default of this place"),
    "NORMLAB_LOCAL_STATE": ("", "a folder on the local disk for the resume state of runs kept on Drive (see "
                            "normlab.checkpoint); empty: the system's temporary folder"),
    "NORMLAB_DRIVE_SAVE_SECONDS": ("600", "at most how often a run kept on Drive copies its resume state there: "
                                   "Drive keeps every replaced file in its trash, counted against the quota"),
}


def setting(name: str) -> str:
    """The value of setting name: its environment variable if set and not empty, else its default."""
    return os.environ.get(name) or SETTINGS[name][0]


def on_colab() -> bool:
    try:
        return importlib.util.find_spec("google.colab") is not None
    except ModuleNotFoundError:  # find_spec imports the parent package, google, which most machines lack
        return False


def on_kaggle() -> bool:
    return "KAGGLE_KERNEL_RUN_TYPE" in os.environ


def drive_mount_point() -> Path:
    return Path(setting("NORMLAB_DRIVE_MOUNT"))


def drive_folder() -> Path:
    """The assignment's folder on Drive (mounted or not)."""
    return drive_mount_point() / setting("NORMLAB_DRIVE_FOLDER")


def kaggle_folder() -> Path:
    """The assignment's folder on Kaggle, where the set-up cell copies it."""
    return Path(setting("NORMLAB_KAGGLE_FOLDER"))


def kept_folder() -> Optional[Path]:
    """The folder whose runs/ and data/ outlive this machine where it is recycled with its disk: on Colab the Drive
    folder, on Kaggle the assignment's folder in Kaggle's working folder; None elsewhere."""
    if on_colab():
        return drive_folder()
    return kaggle_folder() if on_kaggle() else None


def runs_root() -> Path:
    """Where training runs are written: NORMLAB_RUNS, else kept_folder()'s runs/ on Colab and Kaggle, else runs/
    here."""
    if setting("NORMLAB_RUNS"):
        return Path(setting("NORMLAB_RUNS"))
    kept = kept_folder()
    return kept / "runs" if kept is not None else Path("runs")


def data_root(beside_the_code: Union[str, Path]) -> Path:
    """Where the datasets are: NORMLAB_DATA, else kept_folder()'s data/ on Colab and Kaggle, else beside_the_code."""
    if setting("NORMLAB_DATA"):
        return Path(setting("NORMLAB_DATA"))
    kept = kept_folder()
    return kept / "data" if kept is not None else Path(beside_the_code)


def is_on_drive(path: Union[str, Path]) -> bool:
    """Whether path is under the Drive mount point, where replaced files fill the trash."""
    return Path(path).resolve().is_relative_to(drive_mount_point().resolve())


def local_state_root() -> Path:
    """The local folder where runs kept on Drive save their resume state every epoch."""
    import tempfile

    return Path(setting("NORMLAB_LOCAL_STATE") or Path(tempfile.gettempdir()) / "normlab-state")


def drive_save_seconds() -> float:
    return float(setting("NORMLAB_DRIVE_SAVE_SECONDS"))


def work_in_kaggle_folder() -> Path:
    """Copy the assignment, where the set-up cell found it (under /kaggle/input, read-only), into kaggle_folder()
    unless it is there already, since a second copy would undo the student's edits; then work there: it becomes the
    current folder, and takes the found folder's place on sys.path, so that batchnormalization is imported from it."""
    import normlab

    found, folder = Path(normlab.__file__).resolve().parent.parent, kaggle_folder()
    if not folder.exists():
        shutil.copytree(found, folder, copy_function=shutil.copyfile, ignore=shutil.ignore_patterns("__pycache__"))
        for path in [folder, *folder.rglob("*")]:  # copytree gives the folders the read-only modes of the input's
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    sys.path[:] = [str(folder) if entry and Path(entry).resolve() == found else entry for entry in sys.path]
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    os.chdir(folder)
    return folder


def set_up() -> Path:
    """Prepare this place for training and say in one line what was done. On Colab: mount Google Drive (Colab asks
    for permission the first time) and create the Drive folder; on Kaggle: work in the assignment's copy in Kaggle's
    working folder (work_in_kaggle_folder) and create the runs folder; elsewhere nothing. Returns the runs folder."""
    from normlab import RUNS_ROOT
    from normlab.data import DATA_ROOT

    if on_colab():
        from google.colab import drive

        drive.mount(str(drive_mount_point()))
        RUNS_ROOT.mkdir(parents=True, exist_ok=True)
        print(f"Colab: Google Drive mounted; runs in {RUNS_ROOT} and data in {DATA_ROOT} outlive this machine, and "
              "a stopped run resumes from there when you run its cell again.")
    elif on_kaggle():
        work_in_kaggle_folder()
        RUNS_ROOT.mkdir(parents=True, exist_ok=True)
        print(f"Kaggle: runs in {RUNS_ROOT} and data in {DATA_ROOT}. Set Session options > Persistence to Files "
              "before you train, and Kaggle keeps them across sessions: a stopped run resumes from there when you run "
              "its cell again. Downloading CIFAR needs Settings > Internet on. Download runs/grid from the Output "
              "panel to submit it.")
    else:
        print(f"Not on Colab or Kaggle: nothing to set up; runs in {RUNS_ROOT}.")
    return RUNS_ROOT
