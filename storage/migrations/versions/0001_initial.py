"""Initial schema: the whole domain of the design (fleet, registry, training, rollouts, access).

Revision ID: 0001
Revises:
Create Date: 2026-11-25 03:54:18

A migration is frozen text: it imports nothing of fedota, so later model changes never alter it.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    """JSONB on PostgreSQL (indexable, compact), JSON text elsewhere."""
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


# model_versions and training_campaigns reference each other. SQLite cannot add a constraint to an
# existing table but accepts a forward reference, so it gets the FK inline; PostgreSQL adds it once
# both tables exist (and drops it first on the way down).
CAMPAIGN_FK = "fk_model_versions_campaign_id_training_campaigns"


def _inline_campaign_fk() -> bool:
    return not op.get_context().dialect.supports_alter


def _campaign_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["campaign_id"], ["training_campaigns.id"], name=op.f(CAMPAIGN_FK)
    )


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_type", sa.String(length=32), nullable=False),
        sa.Column("actor_id", sa.String(length=40), nullable=False),
        sa.Column("action", sa.String(length=63), nullable=False),
        sa.Column("target_type", sa.String(length=32), nullable=False),
        sa.Column("target_id", sa.String(length=40), nullable=False),
        sa.Column(
            "details",
            _json(),
            nullable=False,
        ),
        sa.CheckConstraint(
            "actor_type IN ('operator', 'device', 'system')", name=op.f("ck_audit_events_actortype")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(op.f("ix_audit_events_at"), "audit_events", ["at"])
    op.create_index(op.f("ix_audit_events_target"), "audit_events", ["target_type", "target_id"])

    op.create_table(
        "fleets",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fleets")),
        sa.UniqueConstraint("name", name=op.f("uq_fleets_name")),
    )
    op.create_table(
        "model_families",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("architecture", sa.String(length=63), nullable=False),
        sa.Column(
            "architecture_config",
            _json(),
            nullable=False,
        ),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_families")),
        sa.UniqueConstraint("name", name=op.f("uq_model_families_name")),
    )
    op.create_table(
        "operators",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "role IN ('viewer', 'operator', 'admin')", name=op.f("ck_operators_role")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operators")),
        sa.UniqueConstraint("name", name=op.f("uq_operators_name")),
    )
    op.create_table(
        "signing_keys",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("keyid", sa.String(length=64), nullable=False),
        sa.Column(
            "public_key",
            _json(),
            nullable=False,
        ),
        sa.Column("encrypted_private_key", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signing_keys")),
        sa.UniqueConstraint("keyid", name=op.f("uq_signing_keys_keyid")),
    )
    op.create_index(op.f("ix_signing_keys_role"), "signing_keys", ["role"])

    op.create_table(
        "tuf_metadata",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("blob_sha256", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tuf_metadata")),
        sa.UniqueConstraint("role", "version", name=op.f("uq_tuf_metadata_role_version")),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("operator_id", sa.String(length=40), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["operator_id"], ["operators.id"], name=op.f("fk_api_tokens_operator_id_operators")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("secret_sha256", name=op.f("uq_api_tokens_secret_sha256")),
    )
    op.create_index(op.f("ix_api_tokens_operator_id"), "api_tokens", ["operator_id"])

    op.create_table(
        "certificate_authorities",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("fleet_id", sa.String(length=40), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=False),
        sa.Column("certificate_sha256", sa.String(length=64), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["fleet_id"], ["fleets.id"], name=op.f("fk_certificate_authorities_fleet_id_fleets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certificate_authorities")),
        sa.UniqueConstraint(
            "certificate_sha256", name=op.f("uq_certificate_authorities_certificate_sha256")
        ),
    )
    op.create_table(
        "cohorts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("fleet_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["fleet_id"], ["fleets.id"], name=op.f("fk_cohorts_fleet_id_fleets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cohorts")),
        sa.UniqueConstraint("fleet_id", "name", name=op.f("uq_cohorts_fleet_id_name")),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("family_id", sa.String(length=40), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("parent_id", sa.String(length=40), nullable=True),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("campaign_id", sa.String(length=40), nullable=True),
        sa.Column(
            "metrics",
            _json(),
            nullable=False,
        ),
        sa.Column("parameter_count", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        *([_campaign_fk()] if _inline_campaign_fk() else []),
        sa.ForeignKeyConstraint(
            ["created_by"], ["operators.id"], name=op.f("fk_model_versions_created_by_operators")
        ),
        sa.ForeignKeyConstraint(
            ["family_id"],
            ["model_families.id"],
            name=op.f("fk_model_versions_family_id_model_families"),
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["model_versions.id"],
            name=op.f("fk_model_versions_parent_id_model_versions"),
        ),
        sa.CheckConstraint(
            "source IN ('import', 'campaign')", name=op.f("ck_model_versions_versionsource")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_versions")),
        sa.UniqueConstraint(
            "family_id", "content_sha256", name=op.f("uq_model_versions_family_id_content_sha256")
        ),
        sa.UniqueConstraint("family_id", "number", name=op.f("uq_model_versions_family_id_number")),
    )
    op.create_table(
        "enrollment_tokens",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("fleet_id", sa.String(length=40), nullable=False),
        sa.Column("cohort_id", sa.String(length=40), nullable=False),
        sa.Column(
            "labels",
            _json(),
            nullable=False,
        ),
        sa.Column("auto_accept", sa.Boolean(), nullable=False),
        sa.Column("max_uses", sa.Integer(), nullable=False),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["cohort_id"], ["cohorts.id"], name=op.f("fk_enrollment_tokens_cohort_id_cohorts")
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["operators.id"], name=op.f("fk_enrollment_tokens_created_by_operators")
        ),
        sa.ForeignKeyConstraint(
            ["fleet_id"], ["fleets.id"], name=op.f("fk_enrollment_tokens_fleet_id_fleets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrollment_tokens")),
        sa.UniqueConstraint("secret_sha256", name=op.f("uq_enrollment_tokens_secret_sha256")),
    )
    op.create_table(
        "model_artifacts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("version_id", sa.String(length=40), nullable=False),
        sa.Column("variant", sa.String(length=32), nullable=False),
        sa.Column("blob_sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column(
            "metrics",
            _json(),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["model_versions.id"],
            name=op.f("fk_model_artifacts_version_id_model_versions"),
        ),
        sa.CheckConstraint(
            "variant IN ('fp32', 'int8', 'int4', 'mcu-int8')",
            name=op.f("ck_model_artifacts_variant"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_artifacts")),
        sa.UniqueConstraint(
            "version_id", "variant", name=op.f("uq_model_artifacts_version_id_variant")
        ),
    )
    op.create_index(
        op.f("ix_model_artifacts_content_sha256"), "model_artifacts", ["content_sha256"]
    )

    op.create_table(
        "releases",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("version_id", sa.String(length=40), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("targets_version", sa.Integer(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"], ["operators.id"], name=op.f("fk_releases_created_by_operators")
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["model_versions.id"],
            name=op.f("fk_releases_version_id_model_versions"),
        ),
        sa.CheckConstraint(
            "state IN ('building', 'ready', 'failed', 'withdrawn')",
            name=op.f("ck_releases_releasestate"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_releases")),
    )
    op.create_index(op.f("ix_releases_version_id"), "releases", ["version_id"])

    op.create_table(
        "training_campaigns",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=127), nullable=False),
        sa.Column("family_id", sa.String(length=40), nullable=False),
        sa.Column("base_version_id", sa.String(length=40), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("num_rounds", sa.Integer(), nullable=False),
        sa.Column("strategy", sa.String(length=32), nullable=False),
        sa.Column(
            "config",
            _json(),
            nullable=False,
        ),
        sa.Column("flower_run_id", sa.BigInteger(), nullable=True),
        sa.Column("result_version_id", sa.String(length=40), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["base_version_id"],
            ["model_versions.id"],
            name=op.f("fk_training_campaigns_base_version_id_model_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["operators.id"],
            name=op.f("fk_training_campaigns_created_by_operators"),
        ),
        sa.ForeignKeyConstraint(
            ["family_id"],
            ["model_families.id"],
            name=op.f("fk_training_campaigns_family_id_model_families"),
        ),
        sa.ForeignKeyConstraint(
            ["result_version_id"],
            ["model_versions.id"],
            name=op.f("fk_training_campaigns_result_version_id_model_versions"),
        ),
        sa.CheckConstraint(
            "state IN ('pending', 'running', 'completed', 'failed', 'cancelled')",
            name=op.f("ck_training_campaigns_campaignstate"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_campaigns")),
    )
    if not _inline_campaign_fk():
        op.create_foreign_key(
            op.f(CAMPAIGN_FK), "model_versions", "training_campaigns", ["campaign_id"], ["id"]
        )
    op.create_table(
        "devices",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("fleet_id", sa.String(length=40), nullable=False),
        sa.Column("cohort_id", sa.String(length=40), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("state_reason", sa.Text(), nullable=False),
        sa.Column("hardware_class", sa.String(length=32), nullable=False),
        sa.Column(
            "hardware_profile",
            _json(),
            nullable=False,
        ),
        sa.Column(
            "labels",
            _json(),
            nullable=False,
        ),
        sa.Column("public_key_sha256", sa.String(length=64), nullable=False),
        sa.Column("public_key_pem", sa.Text(), nullable=False),
        sa.Column("enrollment_token_id", sa.String(length=40), nullable=True),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("current_model_version_id", sa.String(length=40), nullable=True),
        sa.Column("current_variant", sa.String(length=32), nullable=True),
        sa.Column("flower_node_id", sa.Integer(), nullable=True),
        sa.Column(
            "status",
            _json(),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["cohort_id"], ["cohorts.id"], name=op.f("fk_devices_cohort_id_cohorts")
        ),
        sa.ForeignKeyConstraint(
            ["current_model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_devices_current_model_version_id_model_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["enrollment_token_id"],
            ["enrollment_tokens.id"],
            name=op.f("fk_devices_enrollment_token_id_enrollment_tokens"),
        ),
        sa.ForeignKeyConstraint(
            ["fleet_id"], ["fleets.id"], name=op.f("fk_devices_fleet_id_fleets")
        ),
        sa.CheckConstraint(
            "state IN ('pending', 'accepted', 'rejected', 'revoked')",
            name=op.f("ck_devices_devicestate"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("public_key_sha256", name=op.f("uq_devices_public_key_sha256")),
    )
    op.create_index(op.f("ix_devices_cohort_id"), "devices", ["cohort_id"])
    op.create_index(op.f("ix_devices_fleet_state"), "devices", ["fleet_id", "state"])

    op.create_table(
        "patches",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("base_artifact_id", sa.String(length=40), nullable=False),
        sa.Column("target_artifact_id", sa.String(length=40), nullable=False),
        sa.Column("blob_sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column(
            "codec_summary",
            _json(),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["base_artifact_id"],
            ["model_artifacts.id"],
            name=op.f("fk_patches_base_artifact_id_model_artifacts"),
        ),
        sa.ForeignKeyConstraint(
            ["target_artifact_id"],
            ["model_artifacts.id"],
            name=op.f("fk_patches_target_artifact_id_model_artifacts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patches")),
        sa.UniqueConstraint(
            "base_artifact_id",
            "target_artifact_id",
            name=op.f("uq_patches_base_artifact_id_target_artifact_id"),
        ),
    )
    op.create_table(
        "rollouts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("release_id", sa.String(length=40), nullable=False),
        sa.Column("cohort_id", sa.String(length=40), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("success_threshold", sa.Float(), nullable=False),
        sa.Column("max_failure", sa.Float(), nullable=False),
        sa.Column("current_stage", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["cohort_id"], ["cohorts.id"], name=op.f("fk_rollouts_cohort_id_cohorts")
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["operators.id"], name=op.f("fk_rollouts_created_by_operators")
        ),
        sa.ForeignKeyConstraint(
            ["release_id"], ["releases.id"], name=op.f("fk_rollouts_release_id_releases")
        ),
        sa.CheckConstraint(
            "state IN ('running', 'paused', 'completed', 'aborted')",
            name=op.f("ck_rollouts_rolloutstate"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollouts")),
    )
    op.create_index(op.f("ix_rollouts_release_id"), "rollouts", ["release_id"])

    op.create_table(
        "training_rounds",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("campaign_id", sa.String(length=40), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column(
            "metrics",
            _json(),
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["training_campaigns.id"],
            name=op.f("fk_training_rounds_campaign_id_training_campaigns"),
        ),
        sa.CheckConstraint(
            "state IN ('running', 'completed', 'failed')",
            name=op.f("ck_training_rounds_roundstate"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_rounds")),
        sa.UniqueConstraint(
            "campaign_id", "number", name=op.f("uq_training_rounds_campaign_id_number")
        ),
    )
    op.create_table(
        "device_credentials",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("device_id", sa.String(length=40), nullable=False),
        sa.Column("serial", sa.String(length=40), nullable=False),
        sa.Column("certificate_sha256", sa.String(length=64), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=False),
        sa.Column("public_key_sha256", sa.String(length=64), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_device_credentials_device_id_devices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_credentials")),
        sa.UniqueConstraint(
            "certificate_sha256", name=op.f("uq_device_credentials_certificate_sha256")
        ),
        sa.UniqueConstraint("serial", name=op.f("uq_device_credentials_serial")),
    )
    op.create_index(op.f("ix_device_credentials_device_id"), "device_credentials", ["device_id"])

    op.create_table(
        "device_updates",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("rollout_id", sa.String(length=40), nullable=False),
        sa.Column("device_id", sa.String(length=40), nullable=False),
        sa.Column("stage_index", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("from_artifact_id", sa.String(length=40), nullable=True),
        sa.Column("to_artifact_id", sa.String(length=40), nullable=False),
        sa.Column("patch_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_device_updates_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["from_artifact_id"],
            ["model_artifacts.id"],
            name=op.f("fk_device_updates_from_artifact_id_model_artifacts"),
        ),
        sa.ForeignKeyConstraint(
            ["patch_id"], ["patches.id"], name=op.f("fk_device_updates_patch_id_patches")
        ),
        sa.ForeignKeyConstraint(
            ["rollout_id"], ["rollouts.id"], name=op.f("fk_device_updates_rollout_id_rollouts")
        ),
        sa.ForeignKeyConstraint(
            ["to_artifact_id"],
            ["model_artifacts.id"],
            name=op.f("fk_device_updates_to_artifact_id_model_artifacts"),
        ),
        sa.CheckConstraint(
            "state IN ('assigned', 'downloading', 'verifying', 'applying', 'health_checking', "
            "'healthy', 'failed', 'rolled_back')",
            name=op.f("ck_device_updates_updatestate"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_updates")),
        sa.UniqueConstraint(
            "rollout_id", "device_id", name=op.f("uq_device_updates_rollout_id_device_id")
        ),
    )
    op.create_index(op.f("ix_device_updates_device_id"), "device_updates", ["device_id"])
    op.create_index(
        op.f("ix_device_updates_rollout_state"), "device_updates", ["rollout_id", "state"]
    )

    op.create_table(
        "rollout_stages",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("rollout_id", sa.String(length=40), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("fraction", sa.Float(), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["rollout_id"], ["rollouts.id"], name=op.f("fk_rollout_stages_rollout_id_rollouts")
        ),
        sa.CheckConstraint(
            "state IN ('waiting', 'active', 'passed', 'failed')",
            name=op.f("ck_rollout_stages_stagestate"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollout_stages")),
        sa.UniqueConstraint("rollout_id", "index", name=op.f("uq_rollout_stages_rollout_id_index")),
    )
    op.create_table(
        "round_participations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("round_id", sa.String(length=40), nullable=False),
        sa.Column("device_id", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("num_examples", sa.Integer(), nullable=False),
        sa.Column("update_bytes", sa.BigInteger(), nullable=False),
        sa.Column(
            "metrics",
            _json(),
            nullable=False,
        ),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_round_participations_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["round_id"],
            ["training_rounds.id"],
            name=op.f("fk_round_participations_round_id_training_rounds"),
        ),
        sa.CheckConstraint(
            "status IN ('selected', 'accepted', 'rejected', 'failed')",
            name=op.f("ck_round_participations_participationstatus"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_round_participations")),
        sa.UniqueConstraint(
            "round_id", "device_id", name=op.f("uq_round_participations_round_id_device_id")
        ),
    )
    op.create_index(
        op.f("ix_round_participations_device_id"), "round_participations", ["device_id"]
    )


def downgrade() -> None:
    op.drop_table("round_participations")
    op.drop_table("rollout_stages")
    op.drop_table("device_updates")
    op.drop_table("device_credentials")
    op.drop_table("training_rounds")
    op.drop_table("rollouts")
    op.drop_table("patches")
    op.drop_table("devices")
    if not _inline_campaign_fk():
        op.drop_constraint(op.f(CAMPAIGN_FK), "model_versions", type_="foreignkey")
    op.drop_table("training_campaigns")
    op.drop_table("releases")
    op.drop_table("model_artifacts")
    op.drop_table("enrollment_tokens")
    op.drop_table("model_versions")
    op.drop_table("cohorts")
    op.drop_table("certificate_authorities")
    op.drop_table("api_tokens")
    op.drop_table("tuf_metadata")
    op.drop_table("signing_keys")
    op.drop_table("operators")
    op.drop_table("model_families")
    op.drop_table("fleets")
    op.drop_table("audit_events")
