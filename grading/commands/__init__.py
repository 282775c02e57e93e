"""What people run, one module per command: autograde (the main job), collect (merge shards), release, demo,
gradescope (the autograder zip and its two steps), similarity and bench."""
