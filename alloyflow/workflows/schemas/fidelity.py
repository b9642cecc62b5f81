"""Documents of barrier fidelity: ML against DFT//ML, DFT and fine-tuned barriers of one phase."""

from __future__ import annotations

from pydantic import BaseModel, Field


class HopFidelity(BaseModel):
    hop: int
    length: float
    ml: float = Field(description="ML forward barrier, eV")
    dft_ml: float | None = Field(description="DFT//ML: DFT single points on the ML band, eV")
    dft_ml_single_points: int
    dft_ml_seconds: float
    dft_saddle_shifted: bool = False
    dft: float | None = Field(None, description="band re-converged with DFT forces, eV")
    dft_converged: bool | None = None
    dft_force_calls: int | None = None
    dft_seconds: float | None = None
    finetuned_ml: float | None = Field(None, description="fine-tuned potential's own band, eV")
    finetuned_dft_ml: float | None = Field(None, description="DFT//fine-tuned band, eV")
    failures: list[str] = Field(default_factory=list)


class FidelityResult(BaseModel):
    phase: str
    ml_calculator: dict
    dft_calculator: dict
    hops: list[HopFidelity]
    convergence: dict | None = None
    finetuned: dict | None = Field(None, description="active-learning summary: potential, errors, costs")
    dft_single_points: int
    dft_seconds: float
    train_seconds: float = 0.0
