"""The Admin gRPC service: every call authenticated by an operator API token and role-checked."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import grpc

from fedota.protos.v1 import admin_pb2, campaigns_pb2, device_pb2, releases_pb2
from fedota.server import campaigns, cohorts, devices, enrollment_tokens, rollouts
from fedota.server.audit import Actor
from fedota.server.auth import OperatorIdentity, authenticate_operator, authorization_header
from fedota.server.campaigns.messages import campaign_message
from fedota.server.campaigns.operator import checked_id, start_campaign, stop_campaign
from fedota.server.registry import keys, models, releases
from fedota.server.rollouts.messages import request_thresholds, rollout_message
from fedota.server.rollouts.views import RolloutView
from fedota.server.runtime import Runtime
from fedota.storage.db import Database
from fedota.storage.models import Role


class AdminService:
    """Binds fedota.v1.Admin to the operator logic (see `rpc.add_service`)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def _operator(self, context: grpc.ServicerContext, role: Role, what: str) -> OperatorIdentity:
        identity = authenticate_operator(
            self._runtime.database,
            authorization_header(context),
            self._runtime.limits,
            self._runtime.clock(),
        )
        identity.require(role, what)
        return identity

    def CreateCohort(
        self, request: admin_pb2.CreateCohortRequest, context: grpc.ServicerContext
    ) -> admin_pb2.Cohort:
        who = self._operator(context, Role.OPERATOR, "creating a cohort")
        return cohorts.create_cohort(self._runtime, who.actor, request)

    def ListCohorts(
        self, request: admin_pb2.ListCohortsRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ListCohortsResponse:
        self._operator(context, Role.VIEWER, "listing cohorts")
        return cohorts.list_cohorts(self._runtime)

    def CreateEnrollmentToken(
        self, request: admin_pb2.CreateEnrollmentTokenRequest, context: grpc.ServicerContext
    ) -> admin_pb2.CreateEnrollmentTokenResponse:
        who = self._operator(context, Role.OPERATOR, "creating an enrollment token")
        return enrollment_tokens.create_token(self._runtime, who.actor, request)

    def ListEnrollmentTokens(
        self, request: admin_pb2.ListEnrollmentTokensRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ListEnrollmentTokensResponse:
        self._operator(context, Role.VIEWER, "listing enrollment tokens")
        return enrollment_tokens.list_tokens(self._runtime, request)

    def RevokeEnrollmentToken(
        self, request: admin_pb2.RevokeEnrollmentTokenRequest, context: grpc.ServicerContext
    ) -> admin_pb2.EnrollmentToken:
        who = self._operator(context, Role.OPERATOR, "revoking an enrollment token")
        return enrollment_tokens.revoke_token(self._runtime, who.actor, request)

    def ListDevices(
        self, request: admin_pb2.ListDevicesRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ListDevicesResponse:
        self._operator(context, Role.VIEWER, "listing devices")
        return devices.list_devices(self._runtime, request)

    def GetDevice(
        self, request: admin_pb2.DeviceRef, context: grpc.ServicerContext
    ) -> device_pb2.Device:
        self._operator(context, Role.VIEWER, "showing a device")
        return devices.get_device(self._runtime, request)

    def AcceptDevice(
        self, request: admin_pb2.DeviceStateChange, context: grpc.ServicerContext
    ) -> device_pb2.Device:
        who = self._operator(context, Role.OPERATOR, "accepting a device")
        return devices.change_state(self._runtime, who.actor, devices.ACCEPT, request)

    def RejectDevice(
        self, request: admin_pb2.DeviceStateChange, context: grpc.ServicerContext
    ) -> device_pb2.Device:
        who = self._operator(context, Role.OPERATOR, "rejecting a device")
        return devices.change_state(self._runtime, who.actor, devices.REJECT, request)

    def RevokeDevice(
        self, request: admin_pb2.DeviceStateChange, context: grpc.ServicerContext
    ) -> device_pb2.Device:
        who = self._operator(context, Role.OPERATOR, "revoking a device")
        return devices.change_state(self._runtime, who.actor, devices.REVOKE, request)

    # -- the model registry ------------------------------------------------------------------

    def ImportModel(
        self, requests: Iterator[releases_pb2.ImportModelChunk], context: grpc.ServicerContext
    ) -> releases_pb2.ModelVersion:
        who = self._operator(context, Role.OPERATOR, "importing a model")
        return models.import_model(self._runtime, who.actor, requests)

    def ListModels(
        self, request: releases_pb2.ListModelsRequest, context: grpc.ServicerContext
    ) -> releases_pb2.ListModelsResponse:
        self._operator(context, Role.VIEWER, "listing models")
        return models.list_models(self._runtime, request)

    def GetModel(
        self, request: releases_pb2.ModelRef, context: grpc.ServicerContext
    ) -> releases_pb2.ModelVersion:
        self._operator(context, Role.VIEWER, "showing a model")
        return models.get_model(self._runtime, request)

    # -- releases and signing keys ------------------------------------------------------------

    def CreateRelease(
        self, request: releases_pb2.CreateReleaseRequest, context: grpc.ServicerContext
    ) -> releases_pb2.Release:
        who = self._operator(context, Role.OPERATOR, "creating a release")
        return releases.create_release(self._runtime, who.actor, request)

    def ListReleases(
        self, request: releases_pb2.ListReleasesRequest, context: grpc.ServicerContext
    ) -> releases_pb2.ListReleasesResponse:
        self._operator(context, Role.VIEWER, "listing releases")
        return releases.list_releases(self._runtime)

    def ListKeys(
        self, request: releases_pb2.ListKeysRequest, context: grpc.ServicerContext
    ) -> releases_pb2.ListKeysResponse:
        self._operator(context, Role.VIEWER, "listing signing keys")
        return keys.list_keys(self._runtime)

    def RotateKey(
        self, request: releases_pb2.RotateKeyRequest, context: grpc.ServicerContext
    ) -> releases_pb2.RotateKeyResponse:
        who = self._operator(context, Role.ADMIN, "rotating a signing key")
        return keys.rotate_key(self._runtime, who.actor, request)

    # -- staged rollouts ----------------------------------------------------------------------

    def CreateRollout(
        self, request: releases_pb2.CreateRolloutRequest, context: grpc.ServicerContext
    ) -> releases_pb2.Rollout:
        who = self._operator(context, Role.OPERATOR, "creating a rollout")
        view = rollouts.create(
            self._runtime.database,
            who.actor,
            release=request.release,
            cohort=request.cohort,
            stage_percents=list(request.stage_percents),
            thresholds=request_thresholds(request),
            now=self._runtime.clock(),
        )
        return rollout_message(view)

    def ListRollouts(
        self, request: releases_pb2.ListRolloutsRequest, context: grpc.ServicerContext
    ) -> releases_pb2.ListRolloutsResponse:
        self._operator(context, Role.VIEWER, "listing rollouts")
        views = rollouts.list_rollouts(self._runtime.database)
        return releases_pb2.ListRolloutsResponse(rollouts=[rollout_message(v) for v in views])

    def GetRollout(
        self, request: releases_pb2.RolloutRef, context: grpc.ServicerContext
    ) -> releases_pb2.Rollout:
        self._operator(context, Role.VIEWER, "showing a rollout")
        return rollout_message(rollouts.get(self._runtime.database, request.id))

    def PauseRollout(
        self, request: releases_pb2.RolloutRef, context: grpc.ServicerContext
    ) -> releases_pb2.Rollout:
        return self._move(rollouts.pause, "pausing a rollout", request, context)

    def ResumeRollout(
        self, request: releases_pb2.RolloutRef, context: grpc.ServicerContext
    ) -> releases_pb2.Rollout:
        return self._move(rollouts.resume, "resuming a rollout", request, context)

    def AbortRollout(
        self, request: releases_pb2.RolloutRef, context: grpc.ServicerContext
    ) -> releases_pb2.Rollout:
        return self._move(rollouts.abort, "aborting a rollout", request, context)

    def RollbackRollout(
        self, request: releases_pb2.RolloutRef, context: grpc.ServicerContext
    ) -> releases_pb2.Rollout:
        return self._move(rollouts.rollback, "rolling back a rollout", request, context)

    def _move(
        self,
        move: Callable[[Database, Actor, str, str, dt.datetime], RolloutView],
        what: str,
        request: releases_pb2.RolloutRef,
        context: grpc.ServicerContext,
    ) -> releases_pb2.Rollout:
        who = self._operator(context, Role.OPERATOR, what)
        view = move(
            self._runtime.database, who.actor, request.id, request.reason, self._runtime.clock()
        )
        return rollout_message(view)

    # -- training campaigns -------------------------------------------------------------------

    def StartCampaign(
        self, request: campaigns_pb2.StartCampaignRequest, context: grpc.ServicerContext
    ) -> campaigns_pb2.Campaign:
        who = self._operator(context, Role.OPERATOR, "starting a campaign")
        runtime = self._runtime
        campaign_id = start_campaign(runtime.database, runtime.campaigns, who.actor, request)
        return campaign_message(campaigns.get_campaign(runtime.database, campaign_id))

    def ListCampaigns(
        self, request: campaigns_pb2.ListCampaignsRequest, context: grpc.ServicerContext
    ) -> campaigns_pb2.ListCampaignsResponse:
        self._operator(context, Role.VIEWER, "listing campaigns")
        views = campaigns.list_campaigns(self._runtime.database)
        return campaigns_pb2.ListCampaignsResponse(campaigns=[campaign_message(v) for v in views])

    def GetCampaign(
        self, request: campaigns_pb2.CampaignRef, context: grpc.ServicerContext
    ) -> campaigns_pb2.Campaign:
        self._operator(context, Role.VIEWER, "showing a campaign")
        campaign_id = checked_id("id", request.id)
        return campaign_message(campaigns.get_campaign(self._runtime.database, campaign_id))

    def StopCampaign(
        self, request: campaigns_pb2.CampaignRef, context: grpc.ServicerContext
    ) -> campaigns_pb2.Campaign:
        who = self._operator(context, Role.OPERATOR, "stopping a campaign")
        runtime = self._runtime
        campaign_id = checked_id("id", request.id)
        stop_campaign(runtime.database, runtime.campaigns, who.actor, campaign_id)
        return campaign_message(campaigns.get_campaign(runtime.database, campaign_id))
