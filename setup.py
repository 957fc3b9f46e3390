"""Packages the pipeline, our TFX components and the model modules.

Beam workers and the Kubeflow container image install this package so that every process
imports the same code. Dependencies are pinned in requirements.lock, not here.
"""
import setuptools

setuptools.setup(
    name="tfx-compress",
    version="0.1.0",
    description="A TFX pipeline that tunes, trains, distills, prunes and quantizes Keras models.",
    python_requires="==3.10.*",
    packages=setuptools.find_packages(include=["pipeline", "pipeline.*", "components",
                                               "components.*", "modules", "modules.*"]),
)
