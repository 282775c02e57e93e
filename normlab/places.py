"""Where the assignment runs (Colab, Kaggle, or anywhere else) and, from that, where its runs and data live.

A Colab machine is recycled after hours idle or 12 hours at most, and its local disk with it: there the runs and the
CIFAR data live by default in the assignment's folder on Google Drive, which set_up() mounts. Everywhere else
(Kaggle, a lab PC, a laptop) they live beside the code, as before. NORMLAB_RUNS and NORMLAB_DATA override both.

The settings below are environment variables, read when normlab is imported; tests point them at temporary folders.
"""
import importlib.util
import os
from pathlib import Path

SETTINGS = {
    "NORMLAB_DRIVE_MOUNT": ("/content/drive", "where set_up() mounts Google Drive on Colab"),
    "NORMLAB_DRIVE_FOLDER": ("MyDrive/norm", "the assignment's folder on Drive, under the mount point: on Colab the "
                             "runs and the data live in its runs/ and data/ unless NORMLAB_RUNS or NORMLAB_DATA say "
                             "otherwise"),
    "NORMLAB_RUNS": ("", "where training runs are written (runs/grid is submitted); empty: the default of this place"),
    "NORMLAB_DATA": ("", "where the datasets are; empty: the default of this place"),
    "NORMLAB_LOCAL_STATE": ("", "a folder on the local disk for the resume state of runs kept on Drive (see "
                            "normlab.checkpoint); empty: the system's temporary folder"),
    "NORMLAB_DRIVE_SAVE_SECONDS": ("600", "at most how often a run kept on Drive copies its resume state there: "
                                   "Drive keeps every replaced file in its trash, counted against the quota"),
}


def setting(name):
    """The value of setting name: its environment variable if set and not empty, else its default."""
    return os.environ.get(name) or SETTINGS[name][0]


def on_colab():
    try:
        return importlib.util.find_spec("google.colab") is not None
    except ModuleNotFoundError:  # find_spec imports the parent package, google, which most machines lack
        return False


def on_kaggle():
    return "KAGGLE_KERNEL_RUN_TYPE" in os.environ


def drive_mount_point():
    return Path(setting("NORMLAB_DRIVE_MOUNT"))


def drive_folder():
    """The assignment's folder on Drive (mounted or not)."""
    return drive_mount_point() / setting("NORMLAB_DRIVE_FOLDER")


def runs_root():
    """Where training runs are written: NORMLAB_RUNS, else on Colab the Drive folder's runs/, else runs/ here."""
    if setting("NORMLAB_RUNS"):
        return Path(setting("NORMLAB_RUNS"))
    return drive_folder() / "runs" if on_colab() else Path("runs")


def data_root(beside_the_code):
    """Where the datasets are: NORMLAB_DATA, else on Colab the Drive folder's data/, else beside_the_code."""
    if setting("NORMLAB_DATA"):
        return Path(setting("NORMLAB_DATA"))
    return drive_folder() / "data" if on_colab() else Path(beside_the_code)


def is_on_drive(path):
    """Whether path is under the Drive mount point, where replaced files fill the trash."""
    return Path(path).resolve().is_relative_to(drive_mount_point().resolve())


def local_state_root():
    """The local folder where runs kept on Drive save their resume state every epoch."""
    import tempfile

    return Path(setting("NORMLAB_LOCAL_STATE") or Path(tempfile.gettempdir()) / "normlab-state")


def drive_save_seconds():
    return float(setting("NORMLAB_DRIVE_SAVE_SECONDS"))


def set_up():
    """Prepare this place for training and say in one line what was done. On Colab: mount Google Drive (Colab asks
    for permission the first time) and create the Drive folder; elsewhere nothing. Returns the runs folder."""
    from normlab import RUNS_ROOT
    from normlab.data import DATA_ROOT

    if on_colab():
        from google.colab import drive

        drive.mount(str(drive_mount_point()))
        RUNS_ROOT.mkdir(parents=True, exist_ok=True)
        print(f"Colab: Google Drive mounted; runs in {RUNS_ROOT} and data in {DATA_ROOT} outlive this machine, and "
              "a stopped run resumes from there when you run its cell again.")
    elif on_kaggle():
        print(f"Kaggle: nothing to set up; runs in {RUNS_ROOT} are kept when you Save Version "
              "(Save & Run All).")
    else:
        print(f"Not on Colab or Kaggle: nothing to set up; runs in {RUNS_ROOT}.")
    return RUNS_ROOT
