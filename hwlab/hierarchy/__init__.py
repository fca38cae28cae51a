"""Stage ``hierarchy``: the writeup's §1 memory hierarchy, measured on this machine.

Modules: :mod:`.cpu` (numba kernels, sysfs), :mod:`.gpu` (Triton kernels, host link),
:mod:`.measure` (the measuring jobs), :mod:`.knees` (knee detection, pure), :mod:`.table`
(the §1 table and figure), :mod:`.report` (the findings section and headlines).
"""
