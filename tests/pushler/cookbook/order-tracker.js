// Отслеживание заказа
class OrderTracker {
    constructor(orderId, userId, appKey) {
        this.orderId = orderId;
        this.userId = userId;
        this.appKey = appKey;
        this.pushler = null;
        this.channel = null;
        
        this.steps = [
            { status: 'pending', label: 'Оформлен', icon: '🕐' },
            { status: 'confirmed', label: 'Подтверждён', icon: '✅' },
            { status: 'preparing', label: 'Готовится', icon: '👨🍳' },
            { status: 'ready', label: 'Готов', icon: '📦' },
            { status: 'shipped', label: 'В пути', icon: '🚗' },
            { status: 'delivered', label: 'Доставлен', icon: '🎉' }
        ];
        
        this.currentStep = 0;
    }

    async connect() {
        this.pushler = new PushlerClient({
            appKey: this.appKey,
            authEndpoint: '/auth.php'
        });

        return new Promise((resolve) => {
            this.pushler.on('connected', () => {
                this.channel = this.pushler.subscribe(`private-user-${this.userId}`);
                this.setupListeners();
                resolve();
            });
        });
    }

    setupListeners() {
        // Обновление статуса
        this.channel.on('order:status', (data) => {
            if (data.order_id !== this.orderId) return;
            
            this.currentStep = data.step;
            this.updateUI(data);
            this.showNotification(data);
        });

        // Геолокация курьера
        this.channel.on('order:courier-location', (data) => {
            if (data.order_id !== this.orderId) return;
            this.updateCourierMarker(data.lat, data.lng);
        });
    }

    updateUI(data) {
        // Обновляем текущий статус
        document.getElementById('current-status').textContent = data.status_text;
        document.getElementById('status-icon').textContent = data.status_icon;
        
        // Обновляем таймлайн
        this.steps.forEach((step, index) => {
            const el = document.getElementById(`step-${step.status}`);
            if (!el) return;
            
            el.classList.remove('active', 'done', 'pending');
            
            if (index < this.currentStep) {
                el.classList.add('done');
            } else if (index === this.currentStep) {
                el.classList.add('active');
            } else {
                el.classList.add('pending');
            }
        });

        // Комментарий
        if (data.comment) {
            document.getElementById('status-comment').textContent = data.comment;
        }
    }

    showNotification(data) {
        // Браузерное уведомление
        if (Notification.permission === 'granted') {
            new Notification(`Заказ #${this.orderId}`, {
                body: data.status_text,
                icon: '/icons/order.png'
            });
        }

        // Toast внутри страницы
        const toast = document.createElement('div');
        toast.className = 'toast';
        toast.innerHTML = `
            <span class="icon">${data.status_icon}</span>
            <span>${data.status_text}</span>
        `;
        document.getElementById('toasts').appendChild(toast);
        
        setTimeout(() => toast.remove(), 5000);
    }

    updateCourierMarker(lat, lng) {
        if (this.map && this.courierMarker) {
            this.courierMarker.setLatLng([lat, lng]);
        }
    }

    disconnect() {
        this.channel?.unsubscribe();
        this.pushler?.disconnect();
    }
}
