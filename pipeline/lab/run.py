"""The lab stage: one MLflow parent run, one child run per experiment, one summary table.

`run(config)` trains every experiment in `config.experiments`, logs its metrics and figures
to its child run (and writes the PNGs to `config.output_dir`), then writes the Markdown
summary (`summary.md`) and logs it on the parent run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import DataConfig
from pipeline.lab import activations, adding, figures, representations
from pipeline.lab.common import save_figure
from pipeline.lab.config import LabConfig
from pipeline.stages.data import make_datasets
from pipeline.tracking import Run, Tracker


@dataclass(frozen=True)
class LabResult:
    run_id: str
    tracking_uri: str
    summary: str
    output_dir: Path


def _fmt(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def adding_experiment(config: LabConfig, run: Run, log) -> str:
    """Train every cell at every T; return the section's Markdown."""
    results = []
    for length in config.lengths:
        for cell in config.cells:
            result = adding.train_one(
                cell, length, budget=config.parameter_budget, steps=config.adding_steps,
                batch_size=config.adding_batch_size, learning_rate=config.adding_learning_rate,
                seed=config.seed, monitor=length == config.gradient_length,
                monitor_steps=config.monitor_steps)
            run.log_metrics({f"mse.{cell}.T{length}": result.mse,
                             f"seconds.{cell}.T{length}": result.seconds})
            log(f"adding T={length} {cell} ({result.parameters} weights): MSE {result.mse:.4f}"
                f" in {result.seconds:.0f} s")
            results.append(result)
    out = config.output_dir
    save_figure(figures.mse_by_length(results), run, out, "adding_mse_by_length.png")
    save_figure(figures.adding_curves(results), run, out, "adding_learning_curves.png")
    monitored = [result for result in results if result.monitor is not None]
    for result in monitored:
        save_figure(figures.hidden_gradients(result), run, out,
                    f"vanishing_gradient_{result.cell}.png")
        for epoch, curve in result.monitor.hidden.items():
            run.log_series(f"grad_h/{result.cell}/epoch_{epoch}", curve.tolist(), first_step=1)
    save_figure(figures.layer_norms_by_step(
        {result.cell: result.monitor.layer_norms for result in monitored},
        f"Adding problem, T = {config.gradient_length}: per-layer gradient norms while training"),
        run, out, "adding_layer_gradients.png")
    lines = [f"### Adding problem ({config.adding_steps} steps of {config.adding_batch_size}, "
             f"~{config.parameter_budget} weights per model; always answering 1.0: MSE 0.167)",
             "", "| T | " + " | ".join(f"{cell} MSE" for cell in config.cells) + " |",
             "|---|" + "---|" * len(config.cells)]
    for length in config.lengths:
        row = [r for r in results if r.length == length]
        lines.append(f"| {length} | " + " | ".join(
            f"{r.mse:.4f}{' ✓' if r.solved else ''}" for r in row) + " |")
    lines += ["", "Units (weights): " + ", ".join(
        f"{r.cell} {r.units} ({r.parameters})" for r in results if r.length == config.lengths[0]),
        "", "‖∂loss/∂h_1‖ / ‖∂loss/∂h_T‖ at T = "
        f"{config.gradient_length} (how much of the last step's gradient reaches the first):",
        "", "| cell | at initialisation | after training |", "|---|---|---|"]
    for result in monitored:
        hidden = result.monitor.hidden
        ratios = [hidden[epoch][0] / hidden[epoch][-1] for epoch in (0, max(hidden))]
        lines.append(f"| {result.cell} | {ratios[0]:.2e} | {ratios[1]:.2e} |")
    return "\n".join(lines)


def _fashion_arrays(config: LabConfig):
    """Return train and test images and labels of Fashion-MNIST, as many as configured."""
    data_config = DataConfig(source="fashion_mnist", max_examples=config.activation_examples)
    data = make_datasets(data_config, config.seed)
    train_inputs, train_labels = data.examples("train", config.activation_examples)
    test_inputs, test_labels = data.examples("test", min(2000, config.activation_examples))
    return train_inputs, train_labels, test_inputs, test_labels


def activations_experiment(config: LabConfig, run: Run, log) -> str:
    """Train the MLP and the CNN with every activation; return the section's Markdown."""
    data = _fashion_arrays(config)
    results = []
    for kind in ("mlp", "cnn"):
        for activation in config.activations:
            result = activations.train_one(
                kind, activation, data, epochs=config.activation_epochs,
                monitor_steps=config.monitor_steps, seed=config.seed,
                mlp_layers=config.mlp_layers, mlp_units=config.mlp_units)
            run.log_metrics({f"accuracy.{kind}.{activation}": result.accuracy,
                             f"dead_units.{kind}.{activation}": result.dead_share})
            log(f"activations {kind} {activation}: accuracy {result.accuracy:.4f}, dead "
                f"{result.dead_share:.1%}, {result.seconds:.0f} s")
            results.append(result)
    out = config.output_dir
    for kind in ("mlp", "cnn"):
        mine = [result for result in results if result.model == kind]
        save_figure(figures.first_step_norms(mine), run, out, f"activations_{kind}_init_gradients.png")
        save_figure(figures.layer_norms_by_step(
            {result.activation: result.early_norms for result in mine},
            f"{kind.upper()}: per-layer gradient norms over the first {config.monitor_steps} "
            "steps"), run, out, f"activations_{kind}_early_gradients.png")
    save_figure(figures.accuracy_curves(results), run, out, "activations_learning_curves.png")
    lines = [f"### Activations ({config.activation_examples} Fashion-MNIST images, "
             f"{config.activation_epochs} epochs, same seed; MLP: {config.mlp_layers} x "
             f"{config.mlp_units} units)", "",
             "| model | activation | held-out accuracy | steps to 0.70 | first/last layer "
             "‖∂loss/∂W‖ at step 0 | dead units |", "|---|---|---|---|---|---|"]
    for result in results:
        norms = list(result.first_step_norms.values())
        steps = result.steps_to(0.70)
        lines.append(f"| {result.model} | {result.activation} | {result.accuracy:.4f} | "
                     f"{steps if steps is not None else 'not reached'} | "
                     f"{norms[0] / norms[-1]:.2e} | {result.dead_share:.1%} |")
    return "\n".join(lines)


def representations_experiment(config: LabConfig, run: Run, log) -> str:
    """Project both models' penultimate layers; return the section's Markdown."""
    results = [
        representations.fashion_cnn(examples=config.representation_examples,
                                    epochs=config.representation_epochs, seed=config.seed),
        representations.langid(config.langid_config, per_class=config.langid_per_class,
                               epochs=config.representation_epochs, seed=config.seed),
    ]
    lines = ["### Representations (2-D PCA of the test examples; nearest-class-centroid "
             "accuracy in that plane)", "",
             "| model | test accuracy | raw input, 2-D | learned features, 2-D |",
             "|---|---|---|---|"]
    for result, file_name in zip(results, ("representation_fashion_cnn.png",
                                           "representation_langid.png")):
        save_figure(result.figure, run, config.output_dir, file_name)
        run.log_metrics({f"accuracy.{file_name[15:-4]}": result.accuracy,
                         f"separation.{file_name[15:-4]}": result.learned_separation})
        log(f"representations {result.model}: accuracy {result.accuracy:.4f}, 2-D separation "
            f"{_fmt(result.raw_separation, 3)} raw -> {result.learned_separation:.3f} learned")
        lines.append(f"| {result.model} | {result.accuracy:.4f} | "
                     f"{_fmt(result.raw_separation, 3)} | {result.learned_separation:.3f} |")
    return "\n".join(lines)


EXPERIMENTS: dict[str, Callable[[LabConfig, Run, Callable], str]] = {
    "adding": adding_experiment,
    "activations": activations_experiment,
    "representations": representations_experiment,
}


def run(config: LabConfig, log=print) -> LabResult:
    """Run the lab's experiments as MLflow child runs of one parent; return the summary."""
    import time

    tracker = Tracker(config.tracking_uri, config.experiment)
    sections, started = [], time.perf_counter()
    with tracker.run("lab", tags={"lab": "parent"}) as parent:
        parent.log_params({key: str(value) for key, value in config.model_dump().items()})
        log(f"MLflow parent run {parent.run_id} in {tracker.tracking_uri}")
        for name in config.experiments:
            with tracker.run(f"lab-{name}", parent_run_id=parent.run_id,
                             tags={"lab": name}) as child:
                section_started = time.perf_counter()
                sections.append(EXPERIMENTS[name](config, child, log))
                child.log_metrics({"seconds": time.perf_counter() - section_started})
        seconds = time.perf_counter() - started
        summary = "\n\n".join(sections) + f"\n\nWall time: {seconds / 60:.1f} min.\n"
        config.output_dir.mkdir(parents=True, exist_ok=True)
        (config.output_dir / "summary.md").write_text(summary)
        parent.log_text(summary, "lab/summary.md")
        parent.log_metrics({"seconds": seconds})
    return LabResult(parent.run_id, tracker.tracking_uri, summary, config.output_dir)
