"""spec 4.4 single-stream and 4.8 mixed-stream recording jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from emberrtc.api.auth import authorise, services
from emberrtc.api.json_response import JSONResponse
from emberrtc.api.schemas.jobs import IndividualJobBody, MixJobBody, UpdateIndividualJobBody, UpdateMixJobBody
from emberrtc.api.schemas.responses import IndividualJob, MixJob, doc
from emberrtc.bootstrap import Services
from emberrtc.domain.job import INDIVIDUAL, MIX
from emberrtc.domain.tenant import Principal

router = APIRouter(prefix="/v2/apps/{app_id}")
Svc = Annotated[Services, Depends(services)]
Single = authorise("individual_jobs")
Mixed = authorise("mix_jobs")
SINGLE_TAG, MIX_TAG = "Single stream recording job management", "Mixed stream recording job management"


@router.post(
    "/individual-stream-jobs",
    status_code=201,
    tags=[SINGLE_TAG],
    summary="Starting a Single Stream Recording Job (4.4.1)",
    responses=doc(IndividualJob, 201),
)
async def start_individual_job(app_id: str, body: IndividualJobBody, svc: Svc, who: Principal = Single) -> JSONResponse:
    return JSONResponse(await svc.jobs.start_individual(who, app_id, body.model_dump(mode="json")), status_code=201)


@router.get(
    "/individual-stream-jobs/{job_id}",
    tags=[SINGLE_TAG],
    summary="Querying a Single Stream Recording Job (4.4.2)",
    responses=doc(IndividualJob, 200),
)
async def show_individual_job(app_id: str, job_id: str, svc: Svc, who: Principal = Single) -> JSONResponse:
    return JSONResponse(await svc.jobs.show(who, app_id, job_id, INDIVIDUAL))


@router.put(
    "/individual-stream-jobs/{job_id}",
    tags=[SINGLE_TAG],
    summary="Updating a Single Stream Recording Job (4.4.4)",
    responses=doc(IndividualJob, 200),
)
async def update_individual_job(
    app_id: str, job_id: str, body: UpdateIndividualJobBody, svc: Svc, who: Principal = Single
) -> JSONResponse:
    return JSONResponse(await svc.jobs.update_individual(who, app_id, job_id, body.model_dump(mode="json")))


@router.delete(
    "/individual-stream-jobs/{job_id}",
    status_code=204,
    tags=[SINGLE_TAG],
    summary="Stopping a Single Stream Recording Job (4.4.3)",
    responses=doc(None, 204),
)
async def stop_individual_job(app_id: str, job_id: str, svc: Svc, who: Principal = Single) -> Response:
    await svc.jobs.stop(who, app_id, job_id, INDIVIDUAL)
    return Response(status_code=204)


@router.post(
    "/mix-stream-jobs",
    status_code=201,
    tags=[MIX_TAG],
    summary="Starting a Mixed Stream Recording Job (4.8.1)",
    responses=doc(MixJob, 201),
)
async def start_mix_job(app_id: str, body: MixJobBody, svc: Svc, who: Principal = Mixed) -> JSONResponse:
    return JSONResponse(await svc.jobs.start_mix(who, app_id, body.model_dump(mode="json")), status_code=201)


@router.get(
    "/mix-stream-jobs/{job_id}",
    tags=[MIX_TAG],
    summary="Querying a Mixed Stream Recording Job (4.8.2)",
    responses=doc(MixJob, 200),
)
async def show_mix_job(app_id: str, job_id: str, svc: Svc, who: Principal = Mixed) -> JSONResponse:
    return JSONResponse(await svc.jobs.show(who, app_id, job_id, MIX))


@router.put(
    "/mix-stream-jobs/{job_id}",
    tags=[MIX_TAG],
    summary="Modifying a Mixed Stream Recording Job (4.8.3)",
    responses=doc(MixJob, 200),
)
async def update_mix_job(
    app_id: str, job_id: str, body: UpdateMixJobBody, svc: Svc, who: Principal = Mixed
) -> JSONResponse:
    return JSONResponse(await svc.jobs.update_mix(who, app_id, job_id, body.model_dump(mode="json")))


@router.delete(
    "/mix-stream-jobs/{job_id}",
    status_code=204,
    tags=[MIX_TAG],
    summary="Stopping a Mixed Stream Recording Job (4.8.4)",
    responses=doc(None, 204),
)
async def stop_mix_job(app_id: str, job_id: str, svc: Svc, who: Principal = Mixed) -> Response:
    await svc.jobs.stop(who, app_id, job_id, MIX)
    return Response(status_code=204)
