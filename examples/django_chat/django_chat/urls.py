"""No plain HTTP views: the chat is WebSocket only."""

urlpatterns = []
