-- A ghost.serve backend exporting an object: `ghostgate run objects.lua [LISTEN]`. Only public
-- own functions are exported, plus the inherited `greet` listed in expose; handlers get the
-- object as self.
local ghost = require "ghost"

local Account = {}
Account.__index = Account

function Account:greet(who) return self.prefix .. who end     -- inherited: exported via expose
function Account:balance() return self._balance end            -- inherited: not exported

local acct = setmetatable({ prefix = "hello ", _balance = 100 }, Account)
function acct.deposit(self, n)                                 -- own, public: exported
    self._balance = self._balance + n
    return self._balance
end
function acct._audit() return "secret" end                     -- private: not exported
acct.settings = { limits = { get = function() return "nested" end } } -- settings.limits.get

ghost.serve(acct, arg[1] or "tcp://127.0.0.1:0", { self = true, expose = { "greet" } })
