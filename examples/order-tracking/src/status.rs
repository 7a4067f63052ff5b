//! The status vocabulary: inSales's seven system statuses, the cookbook's seven customer-facing
//! statuses (seeded as custom statuses), their Russian text, icon and timeline step, the 16-colour
//! palette, and which moves are allowed.
//!
//! Pure data and pure functions. This module never touches the database: custom statuses live in
//! the `custom_statuses` table and are resolved by `orders`.

/// The system statuses (inSales `fulfillment_status`), in back-office order.
pub const SYSTEM_STATUSES: [&str; 7] = [
    "new",
    "accepted",
    "approved",
    "dispatched",
    "delivered",
    "returned",
    "declined",
];

/// The inSales custom-status palette, the only colours a custom status may take.
pub const PALETTE: [&str; 16] = [
    "#D0CA02", "#E2AC54", "#DF8956", "#DC5F59", "#85C5E0", "#3A9FC9", "#B384E2", "#D361B8",
    "#8EA3E2", "#A69196", "#929594", "#686A69", "#7ABF24", "#86AA60", "#509897", "#249641",
];

/// How a status is shown to the customer: the cookbook's `text`, `icon` and `step`, and the
/// timeline's shorter label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presentation {
    /// The cookbook key (also the seeded custom permalink).
    pub key: &'static str,
    /// The text shown to the customer.
    pub text: &'static str,
    /// The icon.
    pub icon: &'static str,
    /// The timeline step (0 to 5), or -1 off the timeline (cancelled, returned).
    pub step: i64,
    /// The timeline label.
    pub short: &'static str,
}

/// The cookbook's statuses, in timeline order, then the two off-timeline ones.
pub const COOKBOOK: [Presentation; 8] = [
    Presentation {
        key: "pending",
        text: "Ожидает подтверждения",
        icon: "🕐",
        step: 0,
        short: "Оформлен",
    },
    Presentation {
        key: "confirmed",
        text: "Подтверждён",
        icon: "✅",
        step: 1,
        short: "Подтверждён",
    },
    Presentation {
        key: "preparing",
        text: "Готовится",
        icon: "👨‍🍳",
        step: 2,
        short: "Готовится",
    },
    Presentation {
        key: "ready",
        text: "Готов к выдаче",
        icon: "📦",
        step: 3,
        short: "Готов",
    },
    Presentation {
        key: "shipped",
        text: "В доставке",
        icon: "🚗",
        step: 4,
        short: "В пути",
    },
    Presentation {
        key: "delivered",
        text: "Доставлен",
        icon: "🎉",
        step: 5,
        short: "Доставлен",
    },
    Presentation {
        key: "cancelled",
        text: "Отменён",
        icon: "❌",
        step: -1,
        short: "Отменён",
    },
    Presentation {
        key: "returned",
        text: "Возврат",
        icon: "↩️",
        step: -1,
        short: "Возврат",
    },
];

/// The cookbook status a system status falls back to, for custom statuses created through the API.
pub fn system_fallback(system: &str) -> Option<&'static str> {
    Some(match system {
        "new" => "pending",
        "accepted" => "confirmed",
        "approved" => "preparing",
        "dispatched" => "shipped",
        "delivered" => "delivered",
        "declined" => "cancelled",
        "returned" => "returned",
        _ => return None,
    })
}

/// The Russian label of a system status (the auto-created default's title).
pub fn system_title(system: &str) -> &'static str {
    match system {
        "new" => "Новый",
        "accepted" => "В обработке",
        "approved" => "Согласован",
        "dispatched" => "Отгружен",
        "delivered" => "Доставлен",
        "returned" => "Возврат",
        _ => "Отменён",
    }
}

/// The colour an auto-created default of a system status takes.
pub fn system_color(system: &str) -> &'static str {
    match system {
        "new" => "#E2AC54",
        "accepted" => "#3A9FC9",
        "approved" => "#B384E2",
        "dispatched" => "#DF8956",
        "delivered" => "#249641",
        "returned" => "#686A69",
        _ => "#DC5F59",
    }
}

/// Whether `s` is a system status.
pub fn is_system(s: &str) -> bool {
    SYSTEM_STATUSES.contains(&s)
}

/// The presentation of a custom status: its own if it is a cookbook key, else its system status's.
pub fn presentation(custom_permalink: &str, system: &str) -> Presentation {
    let by_key = |k: &str| COOKBOOK.iter().copied().find(|p| p.key == k);
    by_key(custom_permalink)
        .or_else(|| system_fallback(system).and_then(by_key))
        .unwrap_or(COOKBOOK[0])
}

/// Why a move between two statuses is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot move an order from {from} to {to}")]
pub struct TransitionError {
    /// The current status (custom permalink).
    pub from: String,
    /// The requested one.
    pub to: String,
}

/// Whether an order may move from one presentation to another: forward along the timeline (a
/// repeat re-sends with a comment), cancel before shipping, return after delivery.
pub fn check_transition(from: Presentation, to: Presentation) -> Result<(), TransitionError> {
    let ok = match (from.key, to.key) {
        (_, "cancelled") => (0..=3).contains(&from.step) || from.key == "cancelled",
        (_, "returned") => from.key == "delivered" || from.key == "returned",
        ("cancelled" | "returned", _) => false,
        _ => to.step >= from.step,
    };
    if ok {
        Ok(())
    } else {
        Err(TransitionError {
            from: from.key.into(),
            to: to.key.into(),
        })
    }
}

/// Whether an order in this status is still in progress (not finished either way).
pub fn in_progress(p: Presentation) -> bool {
    !matches!(p.key, "delivered" | "cancelled" | "returned")
}

/// Whether the customer may still cancel (steps 0 and 1).
pub fn cancellable(p: Presentation) -> bool {
    (0..=1).contains(&p.step)
}

/// A URL-safe permalink from a title: "New (ordered by phone)" gives `new-ordered-by-phone`.
/// Cyrillic is transliterated so Russian titles give readable permalinks.
pub fn slugify(title: &str) -> String {
    let mut out = String::new();
    for ch in title.to_lowercase().chars() {
        let piece: &str = match ch {
            'a'..='z' | '0'..='9' => {
                out.push(ch);
                continue;
            }
            'а' => "a",
            'б' => "b",
            'в' => "v",
            'г' => "g",
            'д' => "d",
            'е' | 'ё' | 'э' => "e",
            'ж' => "zh",
            'з' => "z",
            'и' | 'й' => "i",
            'к' => "k",
            'л' => "l",
            'м' => "m",
            'н' => "n",
            'о' => "o",
            'п' => "p",
            'р' => "r",
            'с' => "s",
            'т' => "t",
            'у' => "u",
            'ф' => "f",
            'х' => "h",
            'ц' => "ts",
            'ч' => "ch",
            'ш' => "sh",
            'щ' => "sch",
            'ы' => "y",
            'ю' => "yu",
            'я' => "ya",
            'ъ' | 'ь' => "",
            _ => "-",
        };
        out.push_str(piece);
    }
    let parts: Vec<&str> = out.split('-').filter(|p| !p.is_empty()).collect();
    parts.join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(k: &str) -> Presentation {
        presentation(k, "new")
    }

    #[test]
    fn slugs_follow_the_document() {
        assert_eq!(slugify("New (ordered by phone)"), "new-ordered-by-phone");
        assert_eq!(slugify("  Ждёт звонка! "), "zhdet-zvonka");
        assert_eq!(slugify("!!!"), "");
    }

    #[test]
    fn transitions() {
        assert!(check_transition(p("pending"), p("shipped")).is_ok());
        assert!(check_transition(p("shipped"), p("shipped")).is_ok());
        assert!(check_transition(p("shipped"), p("confirmed")).is_err());
        assert!(check_transition(p("ready"), p("cancelled")).is_ok());
        assert!(check_transition(p("shipped"), p("cancelled")).is_err());
        assert!(check_transition(p("delivered"), p("returned")).is_ok());
        assert!(check_transition(p("cancelled"), p("pending")).is_err());
    }

    #[test]
    fn custom_statuses_fall_back_to_their_system_status() {
        assert_eq!(presentation("new-ordered-by-phone", "new").key, "pending");
        assert_eq!(presentation("packed", "approved").step, 2);
        assert_eq!(presentation("ready", "approved").step, 3);
    }
}
