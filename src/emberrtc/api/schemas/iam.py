"""spec 3.1 Obtaining a user token: the password method's request body, with the limits Ember keeps."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints, model_validator

from emberrtc.api.schemas.common import missing_error

# Tenant, user and project names (domain/tenant.py _NAME_RE); IDs are 32 hex characters.
Name = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Password = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class _IamModel(BaseModel):
    # Unknown fields are ignored as IAM does; numbers are not taken for strings here.
    model_config = ConfigDict(extra="ignore")


class DomainRef(_IamModel):
    """The user's account: ``name`` or ``id``."""

    name: Name | None = None
    id: Name | None = None

    @model_validator(mode="after")
    def _one(self) -> DomainRef:
        if self.name is None and self.id is None:
            raise missing_error("auth.identity.password.user.domain needs name or id")
        return self


class PasswordUser(_IamModel):
    name: Name
    password: Password
    domain: DomainRef


class PasswordIdentity(_IamModel):
    user: PasswordUser


class Identity(_IamModel):
    methods: list[Literal["password"]]
    password: PasswordIdentity

    @model_validator(mode="after")
    def _password_only(self) -> Identity:
        if self.methods != ["password"]:
            raise ValueError('auth.identity.methods must be ["password"]')
        return self


class ProjectRef(_IamModel):
    name: Name | None = None
    id: Name | None = None


class Scope(_IamModel):
    project: ProjectRef | None = None


class Auth(_IamModel):
    identity: Identity
    scope: Scope | None = None


class TokenRequest(_IamModel):
    """spec 3.1: ``auth.identity`` (password method) and an optional ``auth.scope.project``."""

    auth: Auth
