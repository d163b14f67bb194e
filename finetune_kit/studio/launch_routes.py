"""Studio routes that launch recipes as CLI processes and stop them."""

from fastapi import APIRouter

router = APIRouter()
