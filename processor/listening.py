"""The listening check: the ASR model hears a job's speech, text chunk by text chunk, and scores it.

A chunk heard too far from its text (over the manifest's `max_wer`) is
synthesized again with the next seed, up to F5B_CHECK_ATTEMPTS takes, through the
same cross-job batching as every synthesis: the job's life yields the retake
request as it yielded its first. The best take of each chunk is kept. Seeds are
fixed by the take's number: take 1 is the job's own synthesis (the manifest's
seed, noise drawn in chunk order), take k of a chunk draws its noise from a
generator of its own seeded with seed + k - 1. Each take's seed and score go to
the job's log, and a rerun of the manifest hears and keeps the same takes.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from processor.errors import CheckFailed, CheckUnavailable
from processor.manifest import Manifest, printable
from processor.metrics import Metrics
from processor.results import CheckReport, ChunkCheck
from processor.scoring import Errors, Metric, Scorer, language_code, metric_for
from processor.synthesis import Rendered, Retake, Speech
from processor.transcription import Transcriber

if TYPE_CHECKING:
    from processor.job import Job
    from processor.rendering import Work

SEEDS = 2**32


@dataclass(frozen=True)
class Plan:
    """What one job's check asks: the limit (None: only measure), the takes allowed, and what a failure does."""

    max_wer: float | None
    attempts: int
    keep: bool  # on_check_fail "keep": the best takes stand, check.passed is false
    language: str | None  # the ASR model's hint, and how the text is scored
    metric: Metric

    def passes(self, errors: Errors) -> bool:
        return self.max_wer is None or errors.rate(self.metric) <= self.max_wer


@dataclass(frozen=True)
class Take:
    seed: int
    heard: str
    errors: Errors
    wave: np.ndarray


@dataclass
class Listening:
    """The worker's check: its ASR model (None: not seeded), F5B_CHECK and F5B_CHECK_ATTEMPTS."""

    transcriber: Transcriber | None
    every_job: bool = False
    attempts: int = 2
    metrics: Metrics = field(default_factory=Metrics)

    @cached_property
    def scorer(self) -> Scorer:
        assert self.transcriber is not None
        return Scorer(self.transcriber.spelling())

    def plan(self, manifest: Manifest) -> Plan | None:
        """The manifest's check, or None; a check this worker cannot hear fails the job before its voice is fetched."""
        wanted = manifest.check if manifest.check is not None else self.every_job or manifest.max_wer is not None
        if not wanted:
            return None
        if self.transcriber is None:
            raise CheckUnavailable(
                "the manifest asks for a listening check (\"check\" or \"max_wer\") but this worker has no ASR "
                "model on its volume; fix: seed one with `f5-batch seed --volume <volume> --asr` (the worker "
                "looks for F5B_ASR_MODEL), or remove \"check\" and \"max_wer\" from the manifest")
        language = language_code(manifest.voice_language)
        return Plan(manifest.max_wer, self.attempts, manifest.on_check_fail == "keep", language,
                    metric_for(manifest.text, language))

    def listen(self, job: Job, plan: Plan | None, work: Work,
               speeches: list[Speech]) -> Generator[Work, list[Speech], list[Speech]]:
        """The speech with each chunk's best take; the check's report goes to `job.check`. Chunks are numbered
        across the script's pieces (the work's requests), in order."""
        if plan is None:
            return speeches
        places = [(request, chunk) for request, speech in enumerate(speeches)
                  for chunk in range(len(speech.rendered.texts))]
        texts = [speeches[request].rendered.texts[chunk] for request, chunk in places]
        takes: list[list[Take]] = [[] for _ in places]
        self._hear(job, plan, takes, list(range(len(places))), speeches, [work.requests[r].seed for r, _ in places])
        for number in range(2, plan.attempts + 1):
            failing = [index for index, heard in enumerate(takes) if not plan.passes(best(heard, plan).errors)]
            if not failing:
                break
            seeds = [(work.requests[places[index][0]].seed + number - 1) % SEEDS for index in failing]
            wanted: dict[int, list[Retake]] = {}
            for index, seed in zip(failing, seeds, strict=True):  # in chunk order, so the retake's order is theirs
                wanted.setdefault(places[index][0], []).append(Retake(texts[index], seed))
            again = yield from job.synthesized(work.retake(wanted, job.time_left_s()))
            self._hear(job, plan, takes, failing, again, seeds)
        kept = [best(heard, plan) for heard in takes]
        job.check = self.report(plan, texts, takes, kept)
        if job.check.passed is False and not plan.keep:
            raise CheckFailed(failure(plan, job.check, len([k for k in kept if not plan.passes(k.errors)])))
        waves = iter(take.wave for take in kept)
        return [replace(speech, rendered=Rendered(speech.rendered.texts, tuple(next(waves) for _ in
                                                                             speech.rendered.texts)))
                for speech in speeches]

    def _hear(self, job: Job, plan: Plan, takes: list[list[Take]], indexes: Sequence[int], speeches: list[Speech],
              seeds: list[int]) -> None:
        """Transcribe and score one take of each of these chunks (`speeches` hold their waves, in that order)."""
        assert self.transcriber is not None
        texts = [text for speech in speeches for text in speech.rendered.texts]
        waves = [wave for speech in speeches for wave in speech.rendered.waves]
        with job.timed("asr"):
            heard = self.transcriber.transcribe_many(waves, speeches[0].sample_rate, plan.language)
        for index, seed, text, wave, said in zip(indexes, seeds, texts, waves, heard, strict=True):
            errors = self.scorer.errors(text, said, plan.language)
            takes[index].append(Take(seed, said, errors, wave))
            number, passed = len(takes[index]), plan.passes(errors)
            self.metrics.heard(passed)
            job.log.event("checked", f"chunk {index + 1} take {number}: {plan.metric.upper()} "
                          f"{errors.rate(plan.metric):.3f}" + ("" if passed else " (over max_wer)"),
                          logging.INFO if passed else logging.WARNING, chunk=index, take=number, seed=seed,
                          wer=round(errors.wer, 4), cer=round(errors.cer, 4), passed=passed,
                          heard=printable(said, 500))

    def report(self, plan: Plan, texts: Sequence[str], takes: list[list[Take]], kept: list[Take]) -> CheckReport:
        assert self.transcriber is not None
        total = sum((take.errors for take in kept), Errors())
        worst = max(range(len(kept)), key=lambda index: kept[index].errors.rate(plan.metric))
        passed = None if plan.max_wer is None else all(plan.passes(take.errors) for take in kept)
        chunk = ChunkCheck(index=worst, text=texts[worst], transcript=kept[worst].heard,
                           wer=round(kept[worst].errors.wer, 4), cer=round(kept[worst].errors.cer, 4),
                           takes=len(takes[worst]), seed=kept[worst].seed)
        return CheckReport(passed=passed, max_wer=plan.max_wer, metric=plan.metric, wer=round(total.wer, 4),
                           cer=round(total.cer, 4), transcript=" ".join(take.heard for take in kept if take.heard),
                           worst_chunk=chunk, chunks=len(kept), retaken=sum(1 for heard in takes if len(heard) > 1),
                           asr_model=self.transcriber.model_name)


def best(takes: list[Take], plan: Plan) -> Take:
    """The take with the fewest errors (the other measure breaks a tie); the earliest of equal ones."""
    return min(takes, key=lambda take: (take.errors.rate(plan.metric), take.errors.wer + take.errors.cer))


def failure(plan: Plan, report: CheckReport, failing: int) -> str:
    worst = report.worst_chunk
    rate = worst.wer if plan.metric == "wer" else worst.cer
    return (f"listening check failed: {failing} of {report.chunks} text chunk(s) stayed over max_wer "
            f"{plan.max_wer:g} after {plan.attempts} take(s) each; the worst, chunk {worst.index + 1} "
            f"({plan.metric.upper()} {rate:.3f}), says \"{printable(worst.text, 200)}\" and was heard as "
            f"\"{printable(worst.transcript, 200)}\"; fix: simplify or rephrase that text, raise max_wer, or "
            f"set \"on_check_fail\": \"keep\" to keep the best takes")
