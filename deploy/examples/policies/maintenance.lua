-- maintenance: refuse calls during a maintenance window (unix times), telling clients when to
-- come back. Config: policy "maintenance" { from = 1767225600, to = 1767229200 }
return {
    name = "maintenance",
    priority = 950, -- before ratelimit, route and breaker: a refused call costs them nothing
    schema = { type = "record", fields = {
        from = { type = "number", required = true }, to = { type = "number", required = true },
        message = { type = "string", default = "down for maintenance" },
    } },
    new = function(conf, service) return { conf = conf, time = service.time } end,
    access = function(self, ctx)
        local now, c = self.time(), self.conf
        if now >= c.from and now < c.to then ctx:reject("overloaded", c.message, c.to - now) end
    end,
}
