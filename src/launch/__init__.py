"""What the launch scripts ask Python for: the processes a server of an Ascend rank table starts. Standard
library only (no MindSpore), so a shell script can call it in a fraction of a second."""
