"""Where data comes from, the forward operators, and single-measurement tasks.

A *task* binds an image source, a forward operator, a noise model and a PSNR
convention into one measurement (see :class:`datamodules.task.Task`); every task
is served to Lightning by :class:`datamodules.datamodule.SingleMeasurementDataModule`.
"""
