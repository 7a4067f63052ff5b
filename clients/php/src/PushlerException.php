<?php

// PushlerException: the base of every error this client throws (a failed HTTP call, a refused
// request, a webhook that does not verify), so callers can catch one type. It never carries the
// app secret.

declare(strict_types=1);

namespace PushlerRu;

/** Base class of every exception thrown by PushlerClient. */
class PushlerException extends \RuntimeException
{
}
