<?php

// ApiException: the broker answered an API call with a non-200 status. It keeps the status and the
// broker's JSON `error` message, so a caller can tell a bad request (400) from a bad signature (401),
// a disabled app (403), an unknown app (404) or data that is too large (413).

declare(strict_types=1);

namespace PushlerRu;

/** The broker refused an HTTP API call; the message is the broker's JSON `error`. */
class ApiException extends PushlerException
{
    /** @var int */
    private $status;

    /** @var string */
    private $body;

    /** @var string|null */
    private $error;

    public function __construct(int $status, string $body, ?string $error)
    {
        $this->status = $status;
        $this->body = $body;
        $this->error = $error;
        $text = $error !== null ? $error : ($body !== '' ? $body : 'no body');
        parent::__construct("Vestnik API error {$status}: {$text}", $status);
    }

    /** The HTTP status the broker answered with. */
    public function getStatus(): int
    {
        return $this->status;
    }

    /** The `error` field of the broker's JSON body, or null when the body was not that JSON. */
    public function getError(): ?string
    {
        return $this->error;
    }

    /** The raw response body. */
    public function getBody(): string
    {
        return $this->body;
    }
}
