"""fedota.server.campaigns: federated training campaigns on Flower, from start to result.

Storage operations (`store`: create, attach a run, record a round with its model version,
finish, fail, resume point), the campaign's spec (`CampaignSpec`), one run's rounds over the
grid (`run.CampaignRun`, driven by fedota's ServerApp), and the coordinator's `CampaignRunner`
that starts runs and follows, fails or resumes them. See docs/federation.md, "Campaigns".
"""

from fedota.server.campaigns.errors import CampaignNotFound, CampaignStateError, StaleRun
from fedota.server.campaigns.link import CoordinatorLink, LinkError, lease_dir
from fedota.server.campaigns.runner import (
    Action,
    CampaignRunner,
    Decision,
    RunnerSettings,
    judge,
)
from fedota.server.campaigns.spec import CampaignSpec
from fedota.server.campaigns.store import (
    CampaignPlan,
    Participation,
    ResumePoint,
    RoundRecord,
    attach_run,
    claim,
    create_campaign,
    eligible_devices,
    fail_campaign,
    finish_campaign,
    record_round,
    resume_point,
    running_campaigns,
)
from fedota.server.campaigns.views import CampaignView, RoundView, get_campaign, list_campaigns

__all__ = [
    "Action",
    "CampaignNotFound",
    "CampaignPlan",
    "CampaignRunner",
    "CampaignSpec",
    "CampaignStateError",
    "CampaignView",
    "CoordinatorLink",
    "Decision",
    "LinkError",
    "Participation",
    "ResumePoint",
    "RoundRecord",
    "RoundView",
    "RunnerSettings",
    "StaleRun",
    "attach_run",
    "claim",
    "create_campaign",
    "eligible_devices",
    "fail_campaign",
    "finish_campaign",
    "get_campaign",
    "judge",
    "lease_dir",
    "list_campaigns",
    "record_round",
    "resume_point",
    "running_campaigns",
]
