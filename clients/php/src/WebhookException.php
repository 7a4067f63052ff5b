<?php

// WebhookException: a webhook request that must not be trusted (wrong key, bad or missing signature,
// a body that is not the documented JSON). Thrown by PushlerClient::verifyWebhook.

declare(strict_types=1);

namespace PushlerRu;

/** A webhook that failed verification. */
class WebhookException extends PushlerException
{
}
